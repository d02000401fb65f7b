"""Remote storage shared by its transfers: exact processor-sharing arithmetic against closed forms."""

from __future__ import annotations

import math

import pytest

from gemini_ft.sim.storage import SharedStorage

GB = 1e9  # 8 Gbps moves 1 GB per second


def test_one_transfer_has_the_whole_bandwidth() -> None:
    storage = SharedStorage(8.0, latency_s=0.5)
    upload = storage.start("upload", 4 * GB, now=10.0)
    assert storage.finish_s(upload) == pytest.approx(14.5)
    assert storage.transfer_s(4 * GB) == pytest.approx(4.5)
    assert storage.in_flight("upload", 14.0) and not storage.in_flight("upload", 14.5)


def test_overlapping_transfers_divide_the_bandwidth() -> None:
    # A: 4 GB from t = 0; B: 1 GB from t = 1. Until t = 1 A moves alone (3 GB left); then each gets
    # 0.5 GB/s: B is done at 3 (A has 2 GB left), then A alone again: done at 5 (= 5 GB at 1 GB/s).
    storage = SharedStorage(8.0, latency_s=0.0)
    a = storage.start("upload", 4 * GB, now=0.0)
    assert storage.finish_s(a) == pytest.approx(4.0)
    b = storage.start("retrieval", 1 * GB, now=1.0)
    assert storage.finish_s(b) == pytest.approx(3.0)
    assert storage.finish_s(a) == pytest.approx(5.0)
    # Starting a third transfer after B finished keeps B's completion and shares with A only.
    c = storage.start("retrieval", 1 * GB, now=4.0)  # A has 1 GB left at t = 4
    assert storage.finish_s(b) == pytest.approx(3.0)
    assert storage.finish_s(a) == pytest.approx(6.0) and storage.finish_s(c) == pytest.approx(6.0)


def test_latency_uses_no_bandwidth() -> None:
    # B's 1 s latency runs while A has the bandwidth to itself.
    storage = SharedStorage(8.0, latency_s=1.0)
    a = storage.start("upload", 2 * GB, now=0.0)  # bytes move from t = 1
    b = storage.start("upload", 1 * GB, now=0.5)  # bytes move from t = 1.5; A has 1.5 GB left then
    assert storage.finish_s(b) == pytest.approx(3.5)  # 1 GB at 0.5 GB/s
    assert storage.finish_s(a) == pytest.approx(4.0)  # 0.5 GB left at 3.5, alone


def test_cancelled_transfers_never_complete() -> None:
    storage = SharedStorage(8.0, latency_s=0.0)
    a = storage.start("upload", 4 * GB, now=0.0)
    storage.cancel_all(2.0)
    assert math.isinf(storage.finish_s(a)) and not storage.in_flight("upload", 2.0)
    b = storage.start("retrieval", 4 * GB, now=2.0)
    assert storage.finish_s(b) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="forward"):
        storage.start("upload", 1.0, now=1.0)
