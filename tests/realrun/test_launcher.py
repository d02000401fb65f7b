"""End to end on CPU with gloo: 2 emulated machines, a tiny GPT, injected failures.

Every recovered run must end with exactly the parameters of an uninterrupted run (flat bytes), and
recover from where the failure says it should: local memory, a peer, or the persistent checkpoint.
"""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from gemini_ft.cli import main
from sim.results_io import read_metadata

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
BASE = ["--machines", "2", "--replicas", "2", "--steps", "6", "--persist-every", "3", "--chunk-mib", "0.05"]


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


def _same_params(a: Path, b: Path) -> bool:
    return (a / "final_params.bin").read_bytes() == (b / "final_params.bin").read_bytes()


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


def test_software_failure_resumes_from_local_memory(reference, tmp_path):
    frame = _run(tmp_path, "--fail", "sw@step=4:rank=1", "--no-disk-baseline")
    assert _retrieves(frame) == [(0, 3, "local"), (1, 3, "local")]
    assert _same_params(tmp_path, reference)


def test_hardware_failure_resumes_from_a_peer(reference, tmp_path):
    frame = _run(tmp_path, "--fail", "hw@step=5:machine=1", "--no-disk-baseline")
    assert _retrieves(frame) == [(0, 4, "local"), (1, 4, "peer")]
    assert _same_params(tmp_path, reference)


def test_losing_every_holder_falls_back_to_persistent(reference, tmp_path):
    frame = _run(
        tmp_path, "--fail", "hw@step=5:machine=0", "--fail", "hw@step=5:machine=1", "--no-disk-baseline"
    )
    assert _retrieves(frame) == [(0, 3, "persistent"), (1, 3, "persistent")]
    assert _same_params(tmp_path, reference)


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
    assert _same_params(tmp_path, reference)


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
    assert _same_params(tmp_path / "reference", tmp_path / "failed")


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
        "--out",
        str(tmp_path),
        "--port",
        str(_free_port()),
    ]
    launcher = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
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
