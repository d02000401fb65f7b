"""Every parallelism and precision recovers bit for bit: FSDP2 in bf16, HSDP in fp32 and bf16, DDP +
ZeRO-1, each with a failure mid-snapshot, one mid-replication, a software and a hardware failure in one
run (FSDP2 in fp32, the default, is what tests/realrun/testbed/test_launcher.py runs). Two machines of
two ranks: HSDP then has two replica groups, and a lost machine's shards come from the other one."""

from pathlib import Path

import pandas as pd
import pytest
from test_launcher import _free_port, _retrieves

from gemini_ft.cli import main
from gemini_ft.realrun.final_params import differences

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
BASE = [
    "--machines", "2", "--procs-per-machine", "2", "--replicas", "2", "--steps", "7", "--persist-every", "10",
    "--chunk-mib", "0.05", "--device", "cpu", "--no-disk-baseline", "--no-progress",
]  # fmt: skip
FAILURES = [
    "sw@step=2:rank=1:during=snapshot",  # step 2's snapshot of rank 1 never commits
    "hw@step=4:machine=1:during=replicate",  # machine 1 dies sending step 4
    "sw@step=5:rank=0",
    "hw@step=7:machine=0",
]
SETTINGS = [
    ("fsdp", "bf16", "llama"),
    ("hsdp", "fp32", "gpt"),
    ("hsdp", "bf16", "llama"),
    ("ddp", "fp32", "gpt"),
]


def _run(out: Path, parallelism: str, dtype: str, model: str, *failures: str) -> pd.DataFrame:
    extra = [arg for spec in failures for arg in ("--fail", spec)]
    code = main(["realrun", *BASE, "--parallelism", parallelism, "--dtype", dtype, "--model", model,
                 "--out", str(out), "--port", str(_free_port()), *extra])  # fmt: skip
    assert code == 0, (out / "logs" / "machine0.log").read_text()[-3000:]
    return pd.read_parquet(out / "measurements.parquet")


@pytest.mark.parametrize(("parallelism", "dtype", "model"), SETTINGS, ids=["-".join(s) for s in SETTINGS])
def test_failures_of_every_kind_end_bit_exact(tmp_path, parallelism, dtype, model):
    _run(tmp_path / "reference", parallelism, dtype, model)
    frame = _run(tmp_path / "failed", parallelism, dtype, model, *FAILURES)
    assert not differences(tmp_path / "failed", tmp_path / "reference")
    retrieves = _retrieves(frame)
    first = {}  # each rank's source at each step's first recovery
    for rank, step, source in retrieves:
        first.setdefault((rank, step), source)
    if parallelism == "hsdp":
        # A twin in the other replica group committed what the failed rank did not: step 2's snapshot
        # of rank 1 and step 4 of machine 1's ranks come from the other group, and no step is lost.
        assert {step for _, step, _ in retrieves} == {2, 4, 6}
        assert first[(1, 2)] == "replica" and first[(2, 4)] == first[(3, 4)] == "replica"
    else:  # each failure resumes the step before it; machine 1's shards come from CPU-memory replicas
        assert {step for _, step, _ in retrieves} == {1, 3, 4, 6}
        assert [first[(r, 3)] for r in range(4)] == ["local", "local", "peer", "peer"]
    engine = pd.read_json(tmp_path / "failed" / "engine" / "rank0.json", typ="series")
    assert engine["parallelism"] == parallelism and engine["dtype"] == dtype
    assert 12.0 <= engine["bytes_per_parameter"] < 12.1  # fp32 master weights + AdamW's two moments
