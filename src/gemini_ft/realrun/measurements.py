"""Per-rank JSONL events and their gathering into `measurements.parquet`.

Workers append one JSON object per event (snapshot, replicate, commit, detect, restart, retrieve,
first_step, lost_steps, persist (the training stall of a persistent checkpoint), persist_write (the
persister's write of one), persistent_rejected, local_rejected, step, disk_save, disk_load, skip — a
snapshot skipped because the previous one was still being copied) to `events/rank<r>.jsonl` (`detail`
says why a persistent checkpoint or a copy in shared memory was rejected; `loss` is the rank's training loss on step and first_step); the launcher
reads them all into one table with the resolved configuration and package version in the Parquet
schema metadata (`gemini_ft.config`, `gemini_ft.version`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # workers only write events: pandas (and pyarrow) load where the launcher gathers them
    import pandas as pd

EVENTS = (
    "snapshot", "replicate", "commit", "detect", "restart", "retrieve", "first_step",
    "lost_steps", "persist", "persist_write", "persistent_rejected", "local_rejected", "step", "disk_save",
    "disk_load", "skip",
)  # fmt: skip
SOURCES = ("local", "replica", "peer", "persistent", "fresh", "disk")
COLUMNS = (
    "run_id", "rank", "machine", "event", "step", "bytes", "duration_s", "source", "peer", "t_s", "ok", "detail",
    "loss",
)  # fmt: skip


class EventLog:
    """Appends events of one rank; `t_s` is seconds since the launcher started the job."""

    def __init__(self, run_dir: Path, run_id: str, rank: int, machine: int, t0: float) -> None:
        self.path = run_dir / "events" / f"rank{rank}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.base = {"run_id": run_id, "rank": rank, "machine": machine}
        self.t0 = t0

    def log(
        self,
        event: str,
        step: int,
        *,
        nbytes: int = 0,
        duration_s: float = 0.0,
        source: str | None = None,
        peer: int | None = None,
        ok: bool = True,
        detail: str | None = None,
        loss: float | None = None,
    ) -> None:
        if event not in EVENTS or (source is not None and source not in SOURCES):
            raise ValueError(f"unknown event {event!r} or source {source!r}")
        record = {
            **self.base, "event": event, "step": step, "bytes": nbytes, "duration_s": duration_s,
            "source": source, "peer": peer, "t_s": time.time() - self.t0, "ok": ok,
            "detail": detail, "loss": loss,
        }  # fmt: skip
        line = json.dumps(record) + "\n"
        # One write per line on an O_APPEND descriptor, so a kill never leaves a half line behind.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def write_engine_info(run_dir: Path, rank: int, info: dict) -> None:
    """What path this rank's checkpoint engine took (device, copy path, snapshots skipped), as JSON."""
    path = run_dir / "engine" / f"rank{rank}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info))


def read_engine_info(run_dir: Path) -> dict[int, dict]:
    """The engine info of every rank that finished, by rank."""
    found = {}
    for path in sorted((run_dir / "engine").glob("rank*.json")):
        try:
            found[int(path.stem.removeprefix("rank"))] = json.loads(path.read_text())
        except (ValueError, json.JSONDecodeError):
            continue  # a torn file from a killed rank says nothing
    return found


def engine_paths(info: dict[int, dict]) -> str:
    """'device: path (ranks ...)' for each distinct combination, e.g. 'cuda:0: device snapshot + ... (ranks 0)'."""
    groups: dict[str, list[int]] = {}
    for rank, item in sorted(info.items()):
        groups.setdefault(f"{item.get('device', '?')}: {item.get('path', '?')}", []).append(rank)
    return "; ".join(f"{key} (ranks {', '.join(map(str, ranks))})" for key, ranks in groups.items())


def read_events(run_dir: Path) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for path in sorted((run_dir / "events").glob("rank*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                rows.append(json.loads(line))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype(
        {
            "rank": "int64",
            "machine": "int64",
            "step": "int64",
            "bytes": "int64",
            "duration_s": "float64",
            "t_s": "float64",
            "loss": "float64",
        }
    ).astype({"peer": "Int64", "ok": "bool"})


def write_parquet(frame: pd.DataFrame, path: Path, config_json: str) -> Path:
    """`measurements.parquet`: the events with the resolved configuration (and version) in its metadata."""
    from gemini_ft.common.results_io import CONFIG, write_table

    # The run directory is private: so is this file, whatever the caller's umask.
    return write_table(frame, path, {CONFIG: config_json}, private=True)


def _timed(rows: pd.DataFrame) -> dict:
    out = {"count": len(rows), "mean_s": round(float(rows.duration_s.mean()), 4)}
    moved, spent = int(rows.bytes.sum()), float(rows.duration_s.sum())
    if moved and spent > 0:
        out["mean_bytes"] = int(rows.bytes.mean())
        out["gb_per_s"] = round(moved / spent / 1e9, 3)
    return out


def summarize(frame: pd.DataFrame) -> dict:
    """Headline numbers of a run: what checkpointing cost, and what recovery took, by source."""
    import pandas as pd

    by_event = {event: frame[frame.event == event] for event in EVENTS}
    checkpoint = {
        e: _timed(by_event[e][by_event[e].ok]) for e in ("snapshot", "replicate", "persist", "persist_write")
        if by_event[e].ok.any()
    }  # fmt: skip
    if (~by_event["persist_write"].ok).any():
        checkpoint["persist_writes_failed"] = int((~by_event["persist_write"].ok).sum())
    if len(by_event["skip"]) or len(by_event["snapshot"]):
        checkpoint["snapshots_skipped"] = len(by_event["skip"])  # due while the previous copy was in flight
    received = by_event["commit"][by_event["commit"].source == "peer"]
    if len(received):
        checkpoint["replicas_received"] = int(received.ok.sum())
        checkpoint["replicas_rejected"] = int((~received.ok).sum())  # incomplete or failed their checksum
    recovery: dict = {}
    for source in ("local", "replica", "peer", "persistent"):
        rows = by_event["retrieve"][by_event["retrieve"].source == source]
        if len(rows):
            recovery[f"retrieve_{source}"] = _timed(rows)
    if len(by_event["detect"]):
        recovery["detect"] = _timed(by_event["detect"])
    rejected = by_event["persistent_rejected"]
    if len(rejected):  # each rank logs each rejection; count checkpoints, not log lines
        recovery["persistent_rejected"] = int(rejected.step.nunique())
        recovery["persistent_rejected_steps"] = sorted(int(s) for s in rejected.step.unique())
    if len(by_event["local_rejected"]):  # once per copy, by the rank that found it (which copy: `detail`)
        recovery["local_copies_rejected"] = len(by_event["local_rejected"])
    fresh = by_event["retrieve"][by_event["retrieve"].source == "fresh"]
    if len(fresh):  # every rank logs each one
        recovery["fresh_restarts"] = int((fresh["rank"] == fresh["rank"].min()).sum())
    if len(by_event["lost_steps"]):
        recovery["lost_steps_mean"] = round(float(by_event["lost_steps"].step.mean()), 2)
    steps = pd.concat([by_event["step"], by_event["first_step"]])
    training = {"steps": int(steps.step.nunique()), "step_mean_s": round(float(steps.duration_s.mean()), 4)}
    if len(by_event["first_step"]):
        training["first_step_after_recovery_mean_s"] = round(
            float(by_event["first_step"].duration_s.mean()), 4
        )
    out = {"events": len(frame), "training": training, "checkpoint": checkpoint, "recovery": recovery}
    disk = {e: _timed(by_event[e]) for e in ("disk_save", "disk_load") if len(by_event[e])}
    local = recovery.get("retrieve_local")
    if "disk_load" in disk and local and local["mean_s"] > 0:
        disk["disk_load_vs_local_restore"] = round(disk["disk_load"]["mean_s"] / local["mean_s"], 1)
    if disk:
        out["disk_baseline"] = disk
    return out
