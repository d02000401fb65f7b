"""Measurement files drawn from known parameters with a seeded Generator, written by realrun's own writer.

Each file is what the real runner would log for a job whose transfers take exactly α + bytes/B plus
Gaussian noise, so the fits can be checked against the truth they were generated from. The defaults
are of the order the tiny and 5m real runs on this 2-core host show: ≈ 8 ms fixed cost per
replication round, ≈ 2.5 ms per snapshot copy into shared memory and 4 ms per restore from it, and peer fetches during a
recovery about 4× faster per byte than replication rounds during training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gemini_ft.realrun.config import RealRunConfig
from gemini_ft.realrun.measurements import COLUMNS, write_parquet


@dataclass(frozen=True)
class Truth:
    """The parameters a synthetic run is drawn from (bytes per second, seconds)."""

    transfer_latency_s: float = 0.008  # per replication round (all peers at once) and per peer retrieval
    rank_bytes_per_s: float = 400e6  # one rank's replication rate (rounds, while training runs)
    fetch_bytes_per_s: float = 1.6e9  # one rank's rate fetching its shard from a peer during a recovery
    copy_latency_s: float = 0.0025  # per snapshot (a warm process)
    restore_latency_s: float = 0.004  # per retrieval from local memory (the first work of a new process)
    snapshot_bytes_per_s: float = 2e9
    storage_latency_s: float = 0.05
    storage_bytes_per_s: float = 150e6  # all ranks together
    iteration_s: float = 0.2
    detect_s: float = 3.0
    restart_s: float = 0.5
    noise: float = 0.02  # relative standard deviation


def synthetic_run(
    path: Path,
    rng: np.random.Generator,
    *,
    shard_bytes: int,
    truth: Truth = Truth(),
    machines: int = 2,
    procs: int = 1,
    replicas: int = 2,
    steps: int = 12,
    persist_every: int = 4,
    fail_step: int | None = 7,
    source: str = "local",
) -> Path:
    """Write `path` (a measurements.parquet) for a job with the given shape; returns the path."""
    world = machines * procs
    rows: list[dict] = []
    t = 0.0

    def log(rank: int, event: str, step: int, duration: float, nbytes: int = 0, src=None, peer=None) -> None:
        rows.append(
            {"run_id": "job", "rank": rank, "machine": rank // procs, "event": event, "step": step,
             "bytes": nbytes, "duration_s": duration, "source": src, "peer": peer, "t_s": t, "ok": True}
        )  # fmt: skip

    def noisy(value: float) -> float:
        return value * (1.0 + truth.noise * rng.standard_normal())

    for rank in range(world):
        log(rank, "restart", -1, noisy(truth.restart_s))
    for step in range(1, steps + 1):
        t += 1.0
        if step == fail_step:
            failed_at = t
            t += truth.detect_s
            for rank in range(world):
                log(rank, "detect", -1, noisy(t - failed_at))
            t += truth.restart_s
            for rank in range(world):
                log(rank, "restart", -1, noisy(truth.restart_s))
            t += 0.5
            for rank in range(world):
                if source == "peer":  # one shard from one peer
                    duration = noisy(truth.transfer_latency_s + shard_bytes / truth.fetch_bytes_per_s)
                else:
                    duration = noisy(truth.restore_latency_s + shard_bytes / truth.snapshot_bytes_per_s)
                log(
                    rank, "retrieve", step - 1, duration, shard_bytes, source, 0 if source == "peer" else None
                )
            t += 0.5
        for rank in range(world):
            log(rank, "step", step, noisy(truth.iteration_s))
            copy_s = truth.copy_latency_s + shard_bytes / truth.snapshot_bytes_per_s
            log(rank, "snapshot", step, noisy(copy_s), shard_bytes, "local")
            duration = noisy(truth.transfer_latency_s + shard_bytes * (replicas - 1) / truth.rank_bytes_per_s)
            for peer in range(1, replicas):
                log(rank, "replicate", step, duration, shard_bytes, "local", (rank + peer * procs) % world)
        if step % persist_every == 0:
            duration = noisy(truth.storage_latency_s + shard_bytes * world / truth.storage_bytes_per_s)
            for rank in range(world):
                log(rank, "persist", step, duration * (1 - 0.01 * rank), shard_bytes, "persistent")
    t += 1.0
    for rank in range(world):
        log(
            rank,
            "disk_load",
            steps,
            noisy(truth.storage_latency_s + shard_bytes * world / 150e6),
            shard_bytes,
            "disk",
        )
    frame = pd.DataFrame(rows, columns=list(COLUMNS)).astype({"peer": "Int64"})
    cfg = RealRunConfig(
        machines=machines, procs_per_machine=procs, replicas=replicas, steps=steps, persist_every=persist_every,
        placement="group" if machines % replicas == 0 else "mixed", out=path.parent,
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(frame, path, cfg.model_dump_json())
    return path


# ---- fixtures (re-exported by the conftest of every test folder that uses them) ----
@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20231023)


@pytest.fixture
def sized_runs(tmp_path: Path, rng: np.random.Generator) -> list[Path]:
    """Three runs of 1, 4 and 16 MiB shards on 2 machines × 2 ranks (enough sizes to separate α and B)."""
    return [
        synthetic_run(tmp_path / f"run{mib}" / "measurements.parquet", rng, shard_bytes=mib * 2**20, procs=2)
        for mib in (1, 4, 16)
    ]
