"""End to end on CPU with gloo: 2 emulated machines, a tiny GPT, injected failures.

Every recovered run must end with exactly the parameters of an uninterrupted run (flat bytes), and
recover from where the failure says it should: local memory, a peer, or the persistent checkpoint.
"""

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from child_signals import sigint_default
from gemini_ft.cli import main
from gemini_ft.common.results_io import read_metadata
from gemini_ft.realrun.config import RealRunConfig
from gemini_ft.realrun.final_params import (
    differences,  # a failed bit-exact check names the tensors that differ
)
from gemini_ft.realrun.measurements import read_events, summarize
from gemini_ft.realrun.testbed.launcher import validate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
# --device cpu: these runs test recovery, which is device-independent, and on a one-GPU host `auto`
# would refuse two emulated machines (one GPU per rank); CUDA has its own tests (-m cuda, gpu_check.py).
BASE = [
    "--machines", "2", "--replicas", "2", "--steps", "6", "--persist-every", "3", "--chunk-mib", "0.05",
    "--device", "cpu",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(out: Path, *extra: str) -> pd.DataFrame:
    code = main(["realrun", *BASE, "--out", str(out), "--port", str(_free_port()), *extra])
    assert code == 0, (out / "logs" / "machine0.log").read_text()[-3000:]
    return pd.read_parquet(out / "measurements.parquet")


def _retrieves(frame: pd.DataFrame) -> list[tuple[int, int, str]]:
    # Ranks of one recovery log in any order; recoveries in a run resume from increasing steps.
    rows = frame[frame.event == "retrieve"]
    return sorted(
        ((int(r.rank), int(r.step), r.source) for r in rows.itertuples()), key=lambda x: (x[1], x[0])
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    frame = _run(out)
    assert set(frame.event) >= {
        "snapshot",
        "replicate",
        "commit",
        "restart",
        "persist",
        "step",
        "disk_save",
        "disk_load",
    }
    return out


def test_measurements_file(reference):
    frame = pd.read_parquet(reference / "measurements.parquet")
    for column in (
        "run_id",
        "rank",
        "machine",
        "event",
        "step",
        "bytes",
        "duration_s",
        "source",
        "peer",
        "t_s",
    ):
        assert column in frame.columns
    meta = read_metadata(reference / "measurements.parquet")
    assert json.loads(meta["config"])["machines"] == 2
    assert meta["version"]
    snapshots = frame[frame.event == "snapshot"]
    assert len(snapshots) == 12 and (snapshots.bytes > 0).all()
    assert set(frame[frame.event == "disk_load"].source) == {"disk"}
    assert not list(Path("/dev/shm").glob(f"gemini-ft-{frame.run_id.iloc[0]}"))


def test_run_directory_and_files_are_private(reference):
    modes = {
        path.relative_to(reference).as_posix(): path.lstat().st_mode & 0o777
        for path in [reference, *reference.rglob("*")]
    }
    assert modes["."] == 0o700 and modes["persistent/step00000003/rank00000/.metadata"] == 0o600
    assert {"config.json", "final_params.bin", "measurements.parquet", "events/rank0.jsonl"} <= modes.keys()
    assert not {name: mode for name, mode in modes.items() if mode & 0o077}  # nothing for group or others


def test_losing_every_holder_falls_back_to_the_newest_persistent_checkpoint_that_verifies(
    reference, tmp_path
):
    # Persisted at 2 and 4; step 4's .metadata is cut in half before both machines (every holder of
    # every shard, so all in-memory copies) die: the run restores the persistent step 2.
    frame = _run(
        tmp_path, "--persist-every", "2", "--fail", "disk@step=5:how=metadata",
        "--fail", "hw@step=6:machine=0", "--fail", "hw@step=6:machine=1", "--no-disk-baseline",
    )  # fmt: skip
    assert _retrieves(frame) == [(0, 2, "persistent"), (1, 2, "persistent")]
    rejected = frame[frame.event == "persistent_rejected"]
    # Each rank verifies its own part: rank 0's is the damaged one, rank 1 hears of it in the vote.
    assert set(rejected.step) == {4} and list(rejected.sort_values("rank").detail.str[:25]) == [
        "rank00000/.metadata has 1",
        "failed its check on anoth",
    ]
    assert summarize(frame)["recovery"]["persistent_rejected_steps"] == [4]
    assert not differences(tmp_path, reference)


@pytest.mark.parametrize(
    ("failures", "retrieves", "rejected"),
    [
        # The owner's newest copy (step 3, in slot 0) flipped while rank 0 restarts: fetched from the peer.
        (
            ("sw@step=4:rank=0", "mem@step=4:machine=0:shard=0:how=flip"),
            [(0, 3, "peer"), (1, 3, "local")],
            ["machine 0 shard 0 slot 0 (step 3): its bytes fail their checksums"],
        ),
        # A replica (machine 0's copy of shard 1, step 4 in slot 1) overwritten with random bytes: refused
        # in the inventory, and the owner's own copy used.
        (
            ("sw@step=5:rank=1", "mem@step=5:machine=0:shard=1:how=random"),
            [(0, 4, "local"), (1, 4, "local")],
            ["machine 0 shard 1 slot 1 (step 4): its bytes fail their checksums"],
        ),
        # Machine 1 lost and the only other copy of its shard at step 4 gone: both resume step 3 from
        # memory (the older slots), not from the persistent checkpoint of step 3.
        (
            ("hw@step=5:machine=1", "mem@step=5:machine=0:shard=1:how=delete"),
            [(0, 3, "local"), (1, 3, "peer")],
            ["machine 0 shard 1 slot 1 (step 4): its data file is missing"],
        ),
    ],
    ids=["own-copy-flipped", "replica-random-bytes", "last-replica-deleted"],
)
def test_a_damaged_copy_in_memory_is_refused_and_the_run_ends_bit_exact(
    reference, tmp_path, failures, retrieves, rejected
):
    frame = _run(tmp_path, *(arg for spec in failures for arg in ("--fail", spec)), "--no-disk-baseline")
    assert _retrieves(frame) == retrieves
    assert list(frame[frame.event == "local_rejected"].detail) == rejected
    assert summarize(frame)["recovery"]["local_copies_rejected"] == 1
    assert list((tmp_path / "faults").glob("damaged*.json"))  # the damage did strike
    assert not differences(tmp_path, reference)


def test_a_flipped_byte_in_the_only_persistent_checkpoint_means_a_fresh_start(reference, tmp_path):
    frame = _run(
        tmp_path, "--fail", "disk@step=4:how=flip",
        "--fail", "hw@step=5:machine=0", "--fail", "hw@step=5:machine=1", "--no-disk-baseline",
    )  # fmt: skip
    assert _retrieves(frame) == [(0, 0, "fresh"), (1, 0, "fresh")]
    recovery = summarize(frame)["recovery"]
    assert recovery["persistent_rejected_steps"] == [3] and recovery["fresh_restarts"] == 1
    assert not differences(tmp_path, reference)


def test_a_software_then_a_hardware_failure_resume_from_local_memory_then_a_peer(reference, failed_run):
    # tests/realrun/conftest.py's run (shared with the tracking tests): rank 1's process dies in step 3,
    # every rank restores step 2 from its own machine; then machine 1 dies in step 5 (its memory
    # wiped), rank 0 restores step 4 locally and rank 1 fetches its shard from machine 0.
    run_dir = failed_run.run_dir
    frame = read_events(run_dir)
    assert _retrieves(frame) == [(0, 2, "local"), (1, 2, "local"), (0, 4, "local"), (1, 4, "peer")]
    assert not differences(run_dir, reference)


def test_a_replacement_agent_starts_in_the_environment_of_the_agent_it_replaces(failed_run):
    # The agents of machines 0 and 1, then machine 1's replacement after the hardware failure. The
    # launcher's own environment changes while the job runs (W&B's tracker sets WANDB_SERVICE when it
    # starts its service); a replacement that inherited it would not run what the first agent ran.
    first0, first1, replacement = failed_run.agent_environments
    assert replacement == first1
    # Workers import this checkout's package and nothing else of it: no folder of top-level names.
    (root, *_) = first0["PYTHONPATH"].split(os.pathsep)
    assert (Path(root) / "gemini_ft" / "realrun").is_dir() and not (Path(root) / "sim").exists()
    assert {k: v for k, v in first0.items() if k != "GEMINI_FT_MACHINE"} == {
        k: v for k, v in first1.items() if k != "GEMINI_FT_MACHINE"
    }


def test_failures_mid_snapshot_and_mid_replication_never_load_partial_state(reference, tmp_path):
    # Step 3's snapshot on rank 0 never commits -> resume from 2. Machine 1 dies while sending step 5
    # (its memory wiped); machine 0 holds only part of shard 1's step 5 -> resume from 4. Small
    # chunks, so far more of them than the sender keeps in flight are unsent when it dies.
    frame = _run(
        tmp_path,
        "--chunk-mib",
        "0.01",
        "--fail",
        "sw@step=3:rank=0:during=snapshot",
        "--fail",
        "hw@step=5:machine=1:during=replicate",
        "--no-disk-baseline",
    )
    assert _retrieves(frame) == [(0, 2, "local"), (1, 2, "local"), (0, 4, "local"), (1, 4, "peer")]
    assert not differences(tmp_path, reference)


def test_ring_of_three_machines_with_two_processes_each(tmp_path):
    # Ring placement keeps machine i's shards on machine i + 1, each at the same local rank: after
    # machine 1 dies, its ranks 2 and 3 fetch from ranks 4 and 5; every other rank restores locally.
    topology = ["--machines", "3", "--procs-per-machine", "2", "--placement", "ring", "--no-disk-baseline"]
    _run(tmp_path / "reference", *topology)
    frame = _run(tmp_path / "failed", *topology, "--fail", "hw@step=5:machine=1")
    rows = frame[frame.event == "retrieve"]
    fetched = sorted(
        (int(r.rank), int(r.step), r.source, None if pd.isna(r.peer) else int(r.peer))
        for r in rows.itertuples()
    )
    local = [(rank, 4, "local", None) for rank in (0, 1, 4, 5)]
    assert fetched == sorted([*local, (2, 4, "peer", 4), (3, 4, "peer", 5)])
    assert not differences(tmp_path / "reference", tmp_path / "failed")


def test_ctrl_c_removes_processes_and_shared_memory(tmp_path):
    command = [
        sys.executable,
        "-m",
        "gemini_ft",
        "realrun",
        "--machines",
        "2",
        "--steps",
        "100000",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
        "--port",
        str(_free_port()),
    ]
    launcher = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default)
    events = tmp_path / "events" / "rank0.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (events.exists() and '"step"' in events.read_text()):
        time.sleep(0.2)
    shm_dirs = list(Path("/dev/shm").glob(f"gemini-ft-{launcher.pid}-*"))
    assert len(shm_dirs) == 1
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(timeout=60) == 130
    assert not shm_dirs[0].exists()
    config = str(tmp_path / "config.json")
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, config)]
    assert leftovers == []


def _cmdline_has(proc: Path, text: str) -> bool:
    try:
        return text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False


def _tree(root: int) -> set[int]:
    """`root` and all its descendants (torchrun puts workers in new sessions, not new parents)."""
    parents = {}
    for proc in Path("/proc").iterdir():
        try:
            parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = {pid for pid, ppid in parents.items() if ppid == parent} - tree
        tree |= children
        frontier += children
    return tree


def _listening(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP listening socket the processes hold, from /proc/net/tcp{,6}."""
    owner = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    owner[target[8:-1]] = pid
        except OSError:
            continue
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in owner:  # 0A: LISTEN
                continue
            hex_address, hex_port = local.split(":")
            raw = bytes.fromhex(hex_address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append((socket.inet_ntop(family, raw), int(hex_port, 16), owner[inode]))
    return found


def _is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback or address.startswith("::ffff:127.")


def test_listeners_are_loopback_stray_requests_are_ignored_and_sigterm_exits_143(tmp_path):
    port = _free_port()
    command = [
        sys.executable, "-m", "gemini_ft", "realrun", "--machines", "2", "--steps", "100000",
        "--persist-every", "1000", "--device", "cpu", "--out", str(tmp_path), "--port", str(port),
    ]  # fmt: skip
    launcher = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    events = tmp_path / "events" / "rank1.jsonl"

    def steps_done() -> int:
        return events.read_text().count('"event": "step"') if events.exists() else 0

    deadline = time.time() + 180
    while time.time() < deadline and steps_done() < 3:
        time.sleep(0.2)
    listeners = _listening(_tree(launcher.pid))
    assert (("127.0.0.1", port, launcher.pid)) in listeners  # the store
    assert len({pid for _, _, pid in listeners}) > 1  # the workers' gloo listeners were seen too
    assert [entry for entry in listeners if not _is_loopback(entry[0])] == []

    # Request files a worker never writes: a name that is no machine, one out of range, garbage bytes.
    for name in ("hw-machineX.request", "hw-machine7.request", "hw-machine-1.request", "junk.request"):
        (tmp_path / "faults" / name).write_bytes(b"\x00\xffnot json")
    before = steps_done()
    while time.time() < deadline and steps_done() < before + 3 and launcher.poll() is None:
        time.sleep(0.2)
    assert launcher.poll() is None and steps_done() >= before + 3

    shm_dirs = list(Path("/dev/shm").glob(f"gemini-ft-{launcher.pid}-*"))
    assert len(shm_dirs) == 1 and (shm_dirs[0] / "launcher.json").exists()
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=60) == 143
    assert not shm_dirs[0].exists()
    config = str(tmp_path / "config.json")
    assert [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, config)] == []
    # The store's port had live connections when the run was stopped: it must be usable at once.
    validate(RealRunConfig(out=tmp_path / "next", port=port, device="cpu"))


@pytest.mark.parametrize("persist_on_failure", [False, True], ids=["periodic-only", "persist-on-failure"])
def test_persist_on_failure_makes_the_recovered_step_the_persistent_fallback(
    reference, tmp_path, persist_on_failure
):
    # The periodic persistent checkpoint is at step 3. Rank 0 fails at 5 and recovers step 4 from
    # memory; then both machines (every copy in memory) are lost at 6. With persist-on-failure the
    # recovered step 4 was persisted at once and is the fallback; without, the periodic step 3 is.
    extra = ["--persist-on-failure"] if persist_on_failure else []
    frame = _run(
        tmp_path, *extra, "--fail", "sw@step=5:rank=0", "--fail", "hw@step=6:machine=0",
        "--fail", "hw@step=6:machine=1", "--no-disk-baseline",
    )  # fmt: skip
    fallback = 4 if persist_on_failure else 3
    assert [r for r in _retrieves(frame) if r[2] == "persistent"] == [(0, fallback, "persistent"),
                                                                      (1, fallback, "persistent")]  # fmt: skip
    writes = frame[frame.event == "persist_write"]
    assert set(writes.step) == ({3, 4, 6} if persist_on_failure else {3, 6}) and writes.ok.all()
    assert not differences(tmp_path, reference)


def test_a_synchronous_persistent_checkpoint_is_written_by_the_ranks_and_stalls_them(reference, tmp_path):
    frame = _run(tmp_path, "--persist-mode", "sync", "--fail", "hw@step=5:machine=0",
                 "--fail", "hw@step=5:machine=1", "--no-disk-baseline")  # fmt: skip
    persists = frame[frame.event == "persist"]
    assert set(persists.detail) == {"sync"} and frame[frame.event == "persist_write"].empty
    assert _retrieves(frame) == [(0, 3, "persistent"), (1, 3, "persistent")]
    assert not differences(tmp_path, reference)
