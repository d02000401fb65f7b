"""Read real-runner measurement files and group their per-rank events into what the simulator models.

A `Run` is one `measurements.parquet` with its resolved `RealRunConfig`. From its events we build
job-level samples: one replication round per (rank, step), one persistent save per step (all ranks
write at once), and one recovery per injected failure (detect → restart → retrieve on every rank).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError

from gemini_ft.common.errors import UserError
from gemini_ft.common.results_io import CONFIG, read_table
from gemini_ft.realrun.config import RealRunConfig
from gemini_ft.realrun.measurements import COLUMNS

OPTIONAL_COLUMNS = ("detail", "loss")

# Detect events of one failure share its time (t_s − duration is the failure's clock time on every
# rank, up to the logging delay); different failures are at least a restart apart.
_SAME_FAILURE_S = 1.0


@dataclass(frozen=True)
class Run:
    """One measurement file: its events and the configuration the real runner resolved."""

    path: Path
    config: RealRunConfig
    events: pd.DataFrame

    @property
    def label(self) -> str:
        return self.path.parent.name or self.path.stem

    def of(self, event: str) -> pd.DataFrame:
        return self.events[self.events["event"] == event]

    def shard_bytes(self) -> pd.Series:
        """Bytes of each rank's checkpoint shard (its newest snapshot)."""
        snaps = self.of("snapshot").sort_values("t_s")
        return snaps.groupby("rank")["bytes"].last()

    def ckpt_bytes_total(self) -> float:
        return float(self.shard_bytes().sum())


def load_runs(paths: list[str | Path]) -> list[Run]:
    """Every file as a `Run`; a missing file, one that is not a measurements table, or a run given twice
    (the same file, or a copy of it) is a UserError: each run must count once in a fit."""
    runs: list[Run] = []
    seen: dict[str, Path] = {}
    for path in map(Path, paths):
        run = load_run(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in seen:
            raise UserError(
                "MEASUREMENTS", str(path), f"is the run of {seen[digest]} again: give each run once"
            )
        seen[digest] = path
        runs.append(run)
    return runs


def load_run(path: Path) -> Run:
    if not path.is_file():
        raise UserError("MEASUREMENTS", str(path), "no such file")
    table = read_table(path, field="MEASUREMENTS", what="a Parquet file")
    for column in OPTIONAL_COLUMNS:  # added after older measurement files were written
        if column not in table.frame.columns:
            table.frame[column] = None
    missing = [c for c in COLUMNS if c not in table.frame.columns]
    if missing:
        raise UserError(
            "MEASUREMENTS",
            str(path),
            f"not a measurements table: missing columns {', '.join(missing)} (expected {', '.join(COLUMNS)})",
        )
    raw = table.metadata.get(CONFIG)
    if raw is None:
        raise UserError("MEASUREMENTS", str(path), "not a measurements table: no gemini_ft.config metadata")
    try:
        data = json.loads(raw)
        if isinstance(data, dict):
            # Runs recorded before the runner had FSDP were DDP + ZeRO-1 runs (and trained a GPT).
            data.setdefault("parallelism", "ddp")
        config = RealRunConfig.model_validate(data)
    except (ValidationError, ValueError, UserError) as exc:
        raise UserError(
            "MEASUREMENTS", str(path), f"its gemini_ft.config is not a real-run config ({_first_line(exc)})"
        ) from None
    events = table.frame[list(COLUMNS)]
    return Run(path=path, config=config, events=events)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def replication_rounds(run: Run) -> pd.DataFrame:
    """One row per (rank, step) replication round: bytes sent (shard × peers) and its duration.

    A round sends the shard to all m − 1 peers concurrently (and receives theirs); the runner logs
    one `replicate` row per peer with the round's duration. Steps with a persistent save are left
    out: the DCP save competes with the round for the same CPUs and links. So is each worker
    process's first round (`first_rounds`).
    """
    rows = _replicates(run)
    rows = rows[~_first_of_process(run, rows)]
    rounds = rows.groupby(["rank", "step"]).agg(
        shard_bytes=("bytes", "first"), peers=("peer", "count"), duration_s=("duration_s", "first")
    )
    rounds["bytes_sent"] = rounds["shard_bytes"] * rounds["peers"]
    return rounds.reset_index()


def first_rounds(run: Run) -> pd.DataFrame:
    """The replication rounds `replication_rounds` leaves out as a process's first: one row per step, the
    slowest rank's duration (a checkpoint completes with its slowest round)."""
    rows = _replicates(run)
    rows = rows[_first_of_process(run, rows)]
    return rows.groupby("step", as_index=False)["duration_s"].max()


def _replicates(run: Run) -> pd.DataFrame:
    """Completed `replicate` rows of steps without a persistent save."""
    rows = run.of("replicate")
    return rows[rows["ok"] & (rows["step"] % run.config.persist_every != 0)]


def _first_of_process(run: Run, rows: pd.DataFrame) -> pd.Series:
    """Whether each `replicate` row belongs to its worker process's first round.

    A worker process's first round (after its `restart` event: the job's start or a recovery) runs
    beside the first iteration after a (re)start, whose one-time costs (DDP's bucket rebuild, the
    allocator, lazy connections) it shares the CPUs with: on the 2-core test bed it took 0.3-0.8 s where
    steady rounds took 10-40 ms. The simulator's in-memory checkpoint is the steady round; the first one
    is reported apart (`first_rounds`) rather than averaged into it.
    """
    restarts = run.of("restart")
    first = pd.Series(False, index=rows.index)
    for rank, of_rank in rows.groupby("rank"):
        started = np.sort(restarts.loc[restarts["rank"] == rank, "t_s"].to_numpy(float))
        if not len(started):
            continue
        # A round's process is the latest restart before it; its first round is the earliest step then.
        process = np.searchsorted(started, of_rank["t_s"].to_numpy(float), side="right")
        steps = of_rank["step"].to_numpy()
        for generation in np.unique(process):
            if generation == 0:
                continue  # logged before any restart event: no process start seen to attribute it to
            in_generation = process == generation
            first_step = steps[in_generation].min()
            first.loc[of_rank.index[in_generation & (steps == first_step)]] = True
    return first


def persistent_saves(run: Run) -> pd.DataFrame:
    """One row per persistent checkpoint: bytes of all ranks together and the slowest rank's time."""
    rows = run.of("persist")
    saves = rows.groupby("step").agg(
        total_bytes=("bytes", "sum"), ranks=("rank", "count"), duration_s=("duration_s", "max")
    )
    saves = saves[saves["ranks"] == run.config.world_size]  # a save cut short by a failure is incomplete
    return saves.reset_index()


def training_steps(run: Run) -> pd.DataFrame:
    """Plain training steps: no persistent save in them, not the first step after a (re)start."""
    rows = run.of("step")
    return rows[rows["step"] % run.config.persist_every != 0]


def recoveries(run: Run) -> pd.DataFrame:
    """One row per (failure, rank) of a completed recovery: detect, restart and retrieve times.

    A rank's process generation starts at its `detect` (logged first by a restarted worker) or at a
    `restart` with no detect before it. A recovery is a generation that starts with a detect and
    reached retrieve; its detect measures failure → process start over every failed round, so the
    sum detect + restart + retrieve is the rank's whole time from failure to restored state.
    """
    columns = ["failure", "rank", "detect_s", "restart_s", "retrieve_s", "source", "bytes", "restored_step"]
    found = []
    for rank, rows in run.events.sort_values("t_s").groupby("rank"):
        generation: dict | None = None
        previous = None
        for row in rows.itertuples(index=False):
            if row.event == "detect" or (row.event == "restart" and previous != "detect"):
                generation = {"rank": rank, "start": row.event}
                if row.event == "detect":
                    generation["detect_s"] = row.duration_s
                    generation["failed_at"] = row.t_s - row.duration_s
            if (
                generation is not None
                and row.event in ("restart", "retrieve")
                and row.event not in generation
            ):
                generation[row.event] = row
                if row.event == "retrieve" and generation["start"] == "detect" and "restart" in generation:
                    found.append(generation)
            previous = row.event
    if not found:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(
        {
            "failed_at": [g["failed_at"] for g in found],
            "rank": [g["rank"] for g in found],
            "detect_s": [g["detect_s"] for g in found],
            "restart_s": [g["restart"].duration_s for g in found],
            "retrieve_s": [g["retrieve"].duration_s for g in found],
            "source": [g["retrieve"].source for g in found],
            "bytes": [g["retrieve"].bytes for g in found],
            "restored_step": [g["retrieve"].step for g in found],
        }
    ).sort_values("failed_at")
    gaps = np.diff(frame["failed_at"].to_numpy(), prepend=-np.inf)
    frame.insert(0, "failure", np.cumsum(gaps > _SAME_FAILURE_S) - 1)
    return frame[columns].reset_index(drop=True)


def recovery_events(run: Run) -> pd.DataFrame:
    """One row per failure, job-level: a recovery ends when its slowest rank has its state back.

    The source is the job's: persistent if any rank loaded storage, peer if any fetched from a peer,
    else local (the simulator's `recovered_from`).
    """
    per_rank = recoveries(run)
    if per_rank.empty:
        return pd.DataFrame(columns=["failure", "source", "retrieve_s", "bytes", "total_s", "ranks"])
    per_rank = per_rank.assign(total_s=per_rank["detect_s"] + per_rank["restart_s"] + per_rank["retrieve_s"])
    grouped = per_rank.groupby("failure")
    return pd.DataFrame(
        {
            "source": grouped["source"].agg(_job_source),
            "retrieve_s": grouped["retrieve_s"].max(),
            "bytes": grouped["bytes"].max(),  # one rank's shard (shards differ by a few bytes)
            "total_s": grouped["total_s"].max(),
            "ranks": grouped["rank"].count(),
        }
    ).reset_index()


def _job_source(sources: pd.Series) -> str:
    present = set(sources)
    for source in ("persistent", "peer"):
        if source in present:
            return source
    return "local"


# torchrun's c10d rendezvous drops a machine whose last keep-alive is older than this many intervals
# (the launcher's `keep_alive_max_attempt`). A machine dies on average half an interval after its last
# keep-alive, so it is dropped on average (this − ½) intervals after it died.
KEEP_ALIVE_MAX_ATTEMPTS = 2


def keep_alive_wait_s(run: Run) -> float:
    """The mean wait from a machine's death until the rendezvous drops it: (attempts − ½) × interval."""
    return (KEEP_ALIVE_MAX_ATTEMPTS - 0.5) * run.config.keep_alive_s


def detections(run: Run) -> pd.DataFrame:
    """One row per failure: its kind and the slowest rank's detect time.

    The kind follows the job's checkpoint source, as in the simulator: a recovery from local memory
    follows a software failure (the machine and its memory survived, torchrun's monitor restarts the
    workers); from a peer or from storage, a hardware failure, whose next rendezvous round also waits
    until the dead machine is dropped (its keep-alives expired) and the replacement's agent has joined.
    """
    per_rank = recoveries(run)
    columns = ["failure", "kind", "detect_s"]
    if per_rank.empty:
        return pd.DataFrame(columns=columns)
    jobs = recovery_events(run).set_index("failure")
    detect = per_rank.groupby("failure")["detect_s"].max()
    kind = jobs.loc[detect.index, "source"].map(lambda s: "software" if s == "local" else "hardware")
    return pd.DataFrame({"failure": detect.index, "kind": kind.to_numpy(), "detect_s": detect.to_numpy()})


def disk_loads(run: Run) -> pd.DataFrame:
    """The disk baseline's persistent reads: one row per rank, with the bytes all ranks read at once.

    Every rank loads its shard of the same DCP checkpoint at the same time from the test bed's local
    disk, so each rank's time is a sample of the job's read of `total_bytes`.
    """
    rows = run.of("disk_load")
    rows = rows[rows["ok"]]
    total = rows.groupby("step")["bytes"].transform("sum")
    return pd.DataFrame({"step": rows["step"], "total_bytes": total, "duration_s": rows["duration_s"]})
