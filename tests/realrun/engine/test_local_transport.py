"""The in-process transport keeps the transport contract the replication tests rely on."""

import pytest

from gemini_ft.realrun.engine.local_transport import LocalNetwork
from gemini_ft.realrun.engine.transport import TransportError


def test_messages_match_in_posting_order_whatever_order_they_are_waited_in():
    network = LocalNetwork(2, timeout_s=5)
    a, b = network.endpoint(0), network.endpoint(1)
    first, second = bytearray(3), bytearray(2)
    early, late = b.recv(0, memoryview(first)), b.recv(0, memoryview(second))
    a.send(1, memoryview(b"abc")).wait()
    a.send(1, memoryview(b"de")).wait()
    late.wait()
    early.wait()
    assert (bytes(first), bytes(second)) == (b"abc", b"de") and network.sent(0, 1) == 2


def test_a_size_mismatch_a_dead_sender_and_silence_raise():
    network = LocalNetwork(3, timeout_s=0.05)
    a, b = network.endpoint(0), network.endpoint(1)
    a.send(1, memoryview(b"abc"))
    with pytest.raises(TransportError, match="sent 3 bytes"):
        b.recv(0, memoryview(bytearray(4))).wait()
    network.crash_after(0, messages=0)
    with pytest.raises(TransportError, match="died"):
        a.send(1, memoryview(b"x"))
    with pytest.raises(TransportError, match="died before sending"):
        b.recv(0, memoryview(bytearray(1))).wait()
    with pytest.raises(TransportError, match="no message"):
        b.recv(2, memoryview(bytearray(1))).wait()


def test_a_corrupted_message_arrives_with_one_bit_flipped():
    network = LocalNetwork(2, timeout_s=5)
    network.corrupt(0, 1, message=1)
    received = [bytearray(4), bytearray(4)]
    for buffer in received:
        network.endpoint(0).send(1, memoryview(b"\x00" * 4))
        network.endpoint(1).recv(0, memoryview(buffer)).wait()
    assert received[0] == bytearray(4) and sum(bin(byte).count("1") for byte in received[1]) == 1
