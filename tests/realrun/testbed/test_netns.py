"""The network-namespace testbed: built and always removed, links really shaped, a real run across it.

Needs root and working `ip netns` (skipped otherwise). The link checks are behaviour checks with wide
margins, not benchmarks: a shaped link must be slower than 1.5x its rate, an unshaped one faster.
"""

import errno
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from gemini_ft.cli import main
from gemini_ft.common.errors import UserError
from gemini_ft.realrun.testbed import netns


def _probe(*tc_args: str) -> str:
    """Why the testbed cannot run here ('' if it can); with tc_args, also try that qdisc on a lo."""
    if os.geteuid() != 0:
        return "needs root"
    name = f"gft-testprobe-{os.getpid()}"
    try:
        made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    except FileNotFoundError:
        return "no `ip` command"
    if made.returncode:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    try:
        if tc_args:
            qdisc = subprocess.run(
                ["tc", "-n", name, "qdisc", "add", "dev", "lo", "root", *tc_args],
                capture_output=True,
                text=True,
            )
            if qdisc.returncode:
                return f"`tc qdisc add ... {' '.join(tc_args)}` fails here: {qdisc.stderr.strip()}"
        return ""
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


NO_NETNS = _probe()
NO_NETEM = NO_NETNS or _probe("netem", "delay", "1ms")
pytestmark = [pytest.mark.skipif(bool(NO_NETNS), reason=NO_NETNS), pytest.mark.timeout(180)]

# Run inside a namespace with `python -c`: `serve` prints its port, then either counts bytes until EOF
# and acknowledges with one byte, or echoes; `send` times a bulk transfer or small round trips.
PEER = """
import socket, sys, time
if sys.argv[1] == "serve":
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen(1)
    print(server.getsockname()[1], flush=True)
    conn, _ = server.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    bulk = conn.recv(1) == b"b"
    while data := conn.recv(1 << 20):
        if not bulk:
            conn.sendall(data)
    if bulk:
        conn.sendall(b"k")
else:
    host, port, count = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    conn = socket.create_connection((host, port), timeout=30)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if sys.argv[1] == "bulk":
        block = b"x" * (1 << 20)
        start = time.perf_counter()
        conn.sendall(b"b")
        for offset in range(0, count, len(block)):
            conn.sendall(block[: count - offset])
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(1) == b"k"
        print(count * 8 / (time.perf_counter() - start) / 1e9)
    else:
        conn.sendall(b"e")
        rtts = []
        for _ in range(count):
            start = time.perf_counter()
            conn.sendall(b"p")
            assert conn.recv(1) == b"p"
            rtts.append(time.perf_counter() - start)
        print(min(rtts) * 1000)
"""


def _job() -> str:
    return f"{os.getpid()}-{secrets.token_hex(6)}"


def _leftovers(sid: str) -> list[str]:
    """Names of job `sid`'s namespaces and interfaces, from `ip` itself (not the module under test)."""
    ip = ["ip", "netns", "list"], ["ip", "-o", "link", "show"]
    namespaces, links = (subprocess.run(c, capture_output=True, text=True, check=True).stdout for c in ip)
    names = [line.split()[0] for line in namespaces.splitlines() if line.strip()]
    names += [line.split()[1].split("@")[0].rstrip(":") for line in links.splitlines()]
    return sorted(name for name in names if name.startswith((f"gft-{sid}-", f"gft{sid}-")))


def _between(bed: netns.Testbed, mode: str, count: int) -> float:
    """Run PEER's client in machine 0 against its server in machine 1; returns what the client prints."""
    server = subprocess.Popen(
        [*bed.exec_prefix(1), sys.executable, "-c", PEER, "serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        port = server.stdout.readline().strip()
        client = subprocess.run(
            [*bed.exec_prefix(0), sys.executable, "-c", PEER, mode, bed.machines[1].address, port, str(count)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return float(client.stdout)
    finally:
        server.kill()
        server.wait()


def test_testbed_is_built_and_removed_also_after_an_error():
    job = _job()
    sid = netns.short_id(job)
    everything = sorted(
        [f"gft-{sid}-m{i}" for i in range(3)] + [f"gft{sid}-br"] + [f"gft{sid}-m{i}" for i in range(3)]
    )
    with pytest.raises(RuntimeError, match="boom"), netns.testbed(job, 3, 1.0, 0.0) as bed:
        assert [m.namespace for m in bed.machines] == [f"gft-{sid}-m{i}" for i in range(3)]
        assert _leftovers(sid) == everything
        inside = subprocess.run(
            [*bed.exec_prefix(2), "ip", "-j", "addr", "show", "dev", netns.IFNAME],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert json.loads(inside)[0]["addr_info"][0]["local"] == bed.machines[2].address
        for where in (["tc"], ["tc", "-n", bed.machines[2].namespace]):
            dev = bed.machines[2].host_link if len(where) == 1 else netns.IFNAME
            shown = subprocess.run([*where, "qdisc", "show", "dev", dev], capture_output=True, text=True)
            assert "tbf 1: root" in shown.stdout and "rate 1Gbit" in shown.stdout
        # The root namespace (the launcher's store) reaches a machine over the bridge: a refused
        # connection is an answer from the machine's kernel, not a timeout.
        with socket.socket() as probe:
            probe.settimeout(5)
            assert probe.connect_ex((bed.machines[0].address, 9)) == errno.ECONNREFUSED
        raise RuntimeError("boom")
    assert _leftovers(sid) == []
    with netns.testbed(job, 1, None, 0.0):
        assert _leftovers(sid) == [f"gft-{sid}-m0", f"gft{sid}-br", f"gft{sid}-m0"]
    assert _leftovers(sid) == []


HOLD = """
import sys, time
from gemini_ft.realrun.testbed import netns
try:
    with netns.testbed(sys.argv[1], 2, 0.5, 0.0):
        print("up", flush=True)
        time.sleep(120)
except KeyboardInterrupt:  # what the testbed makes of SIGTERM, so that its cleanup runs
    sys.exit(130)
"""


def test_sigterm_removes_the_testbed_and_sigkill_leftovers_are_removable():
    for sig in (signal.SIGTERM, signal.SIGKILL):
        job = _job()
        sid = netns.short_id(job)
        holder = subprocess.Popen([sys.executable, "-c", HOLD, job], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline() == "up\n"
        assert len(_leftovers(sid)) == 5
        with pytest.raises(UserError, match="still runs"):
            netns.remove_leftovers(sid)  # never pull the links from under a live job
        holder.send_signal(sig)
        code = holder.wait(timeout=30)
        if sig == signal.SIGTERM:
            assert code == 130 and _leftovers(sid) == []
            continue
        assert len(_leftovers(sid)) == 5  # SIGKILL leaves no chance to clean up ...
        assert sid in json.dumps(netns.find_leftovers())
        removed = netns.remove_leftovers(sid)  # ... so the leftovers are removed by the job's id
        assert len(removed["namespaces"]) == 2 and len(removed["links"]) == 3
        assert _leftovers(sid) == []


def test_a_shaped_link_is_slower_than_its_rate_and_an_unshaped_one_is_not():
    gbps = 0.2
    with netns.testbed(_job(), 2, gbps, 0.0) as bed:
        shaped = _between(bed, "bulk", 6_000_000)  # ~0.25 s at 0.2 Gbit/s
    with netns.testbed(_job(), 2, None, 0.0) as bed:
        unshaped = _between(bed, "bulk", 30_000_000)
    print(f"configured {gbps} Gbit/s: measured {shaped:.3f} Gbit/s; unshaped {unshaped:.2f} Gbit/s")
    assert 0.25 * gbps < shaped < 1.5 * gbps
    assert unshaped > 1.5 * gbps  # the check above can tell a shaped link from an unshaped one


def test_netem_arguments_are_valid_tc_syntax():
    # Where the kernel lacks sch_netem only tc's own parser can check them: it rejects bad arguments
    # (exit 1, "What is ...") before the kernel rejects an unknown qdisc kind (exit 2).
    with netns.testbed(_job(), 1, 1.0, 0.0) as bed:
        tail = netns.shaping_commands(1.0, 0.5)[1]
        added = subprocess.run(
            ["tc", "-n", bed.machines[0].namespace, "qdisc", "add", "dev", netns.IFNAME, *tail],
            capture_output=True, text=True,
        )  # fmt: skip
    assert tail[:4] == ["parent", "1:1", "handle", "10:"] and "250us" in tail
    assert added.returncode == 0 or "qdisc kind is unknown" in added.stderr, added.stderr


@pytest.mark.skipif(bool(NO_NETEM), reason=NO_NETEM or "")
def test_a_delayed_link_delays_by_at_least_its_latency():
    latency_ms = 5.0
    with netns.testbed(_job(), 2, 1.0, latency_ms) as bed:
        one_way = _between(bed, "echo", 20) / 2
    print(f"configured {latency_ms} ms one way: measured {one_way:.2f} ms")
    assert latency_ms <= one_way < latency_ms + 20


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_latency_without_netem_is_a_one_line_error(capsys, tmp_path):
    if not NO_NETEM:
        pytest.skip("this kernel has netem, so --link-latency-ms works here")
    argv = [
        "realrun",
        "--netns",
        "--link-latency-ms",
        "0.5",
        "--out",
        str(tmp_path),
        "--port",
        str(_free_port()),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gemini-ft: error: --link-latency-ms = 0.5: needs the tc netem qdisc")
    assert err.count("\n") == 1


@pytest.mark.slow
def test_a_run_across_namespaces_recovers_from_a_peer_and_leaves_nothing_behind(tmp_path):
    gbps = 0.1
    argv = [
        "realrun", "--netns", "--link-gbps", str(gbps), "--machines", "2", "--replicas", "2", "--steps", "4",
        "--persist-every", "3", "--chunk-mib", "0.05", "--fail", "hw@step=3:machine=1", "--no-disk-baseline",
        "--device", "cpu",
        "--out", str(tmp_path), "--port", str(_free_port()),
    ]  # fmt: skip
    assert main(argv) == 0, (tmp_path / "logs" / "machine1.log").read_text()[-3000:]
    frame = pd.read_parquet(tmp_path / "measurements.parquet")
    retrieves = sorted(
        (int(r.rank), int(r.step), r.source) for r in frame[frame.event == "retrieve"].itertuples()
    )
    assert retrieves == [(0, 2, "local"), (1, 2, "peer")]
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["netns"], config["link_gbps"], config["link_latency_ms"]) == (True, gbps, 0.0)
    # Every replication crossed the shaped links: none was faster than the rate allows (less a
    # token bucket's worth), which loopback between plain processes easily is.
    replicate = frame[frame.event == "replicate"]
    floor_s = (replicate.bytes - 2 * 65536) * 8 / (gbps * 1e9)
    assert len(replicate) and (replicate.duration_s >= floor_s).all(), replicate[["bytes", "duration_s"]]
    run_id = frame.run_id.iloc[0]
    assert _leftovers(netns.short_id(run_id)) == []
    assert not Path(f"/dev/shm/gemini-ft-{run_id}").exists()
