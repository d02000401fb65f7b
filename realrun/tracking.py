"""Rank 0's view of a real run in TensorBoard or W&B: steps, checkpoints, failures and the configuration.

Every rank keeps its own JSONL events (`realrun.measurements`); with `--track`, `TrackedEventLog`
also hands each event rank 0 logs to a `sim.tracking.Tracker`, whose thread writes it. After a
recovery all ranks gather their retrieval times once, so rank 0 logs the job's recovery by source.
Each job is one TensorBoard run / one W&B run (`track_dir/<start time>-<job>`); every restarted
round of rank 0 appends to it. Metric names: see `METRICS`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from realrun.config import RealRunConfig
from realrun.measurements import EventLog
from sim.tracking import Tracker, open_tracker

SOURCES = ("local", "peer", "persistent")
METRICS = {
    "train/loss": "rank 0's training loss, per step",
    "train/iteration_s": "iteration time on the host clock, per step (the events' step duration)",
    "train/iteration_gpu_s": "iteration time between CUDA events, per step (CUDA only)",
    "ckpt/snapshot_s": "copy of rank 0's shard into shared memory, per checkpoint",
    "ckpt/snapshot_gbps": "its bandwidth in GB/s",
    "ckpt/commit_s": "snapshot start to local commit (copy + checksum + manifest)",
    "ckpt/replicate_s": "sending the shard to its peers, per checkpoint",
    "ckpt/replicate_gbps": "bytes per peer / replication time, GB/s",
    "ckpt/replica_received_s": "receiving a peer's shard; ckpt/replica_ok: 1 if it verified",
    "ckpt/persist_s": "persistent (DCP) checkpoint, with ckpt/persist_gbps",
    "marker/software_failure": "1 at the step a software failure struck",
    "marker/hardware_failure": "1 at the step a hardware failure struck",
    "marker/recovery": "1 at the first step after a recovery",
    "failure/detect_s": "failure to the restarted worker's start",
    "failure/restart_s": "worker start to joining the job",
    "failure/lost_steps": "completed steps that must be redone",
    "failure/resumed_from_step": "the checkpoint's step",
    "recovery/retrieve_<source>_s": "slowest rank's retrieval per source (local, peer, persistent)",
    "recovery/retrieve_<source>_gbps": "shard bytes from that source / that time",
    "recovery/shards_<source>": "shards restored from that source",
    "recovery/first_step_s": "the first step after recovery",
    "recovery/time_to_first_step_s": "failure to the end of the first step after recovery",
}
HPARAM_TAGS = ("train/loss", "train/iteration_s", "recovery/time_to_first_step_s")


def track_directory(cfg: RealRunConfig, job: str, t0: float) -> tuple[Path, str]:
    """Where this job's tracking goes, and its run name (start time first, so runs sort by age)."""
    name = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(t0))}-{job}"
    return (cfg.track_dir or cfg.out / "track") / name, name


class RunTracker:
    """The job's view for rank 0 (a no-op tracker elsewhere); every rank joins the recovery gather."""

    def __init__(self, cfg: RealRunConfig, rank: int, job: str, t0: float, cuda: bool) -> None:
        self.enabled = cfg.track != "none"
        directory, name = track_directory(cfg, job, t0)
        kind = cfg.track if rank == 0 else "none"
        config = cfg.model_dump(mode="json")
        self.tracker: Tracker = open_tracker(
            kind, directory, name=name, config=config, online=cfg.track_online, run_id=job
        )
        self.tracker.hparams(config, tags=HPARAM_TAGS)
        self.cuda = cuda and self.tracker.active
        self.run_dir = cfg.out
        self.last_retrieve = (0.0, 0, -1)  # this rank's (duration, bytes, source index)
        # detect/restart/lost steps, placed once the resume step is known
        self._pending: dict[str, float] = {}
        self._replicated = -1
        self._failed_at: float | None = None

    def wrap(self, events: EventLog) -> EventLog:
        return TrackedEventLog(events, self) if self.enabled else events

    def start_step(self) -> Any:
        if not self.cuda:
            return None
        start = torch.cuda.Event(enable_timing=True)
        start.record()
        return start

    def end_step(self, step: int, loss: torch.Tensor, start: Any) -> None:
        """Queue the loss (read by the tracker's thread) and, on CUDA, the step's device time."""
        if not self.tracker.active:
            return
        values: dict[str, Any] = {"train/loss": loss.detach()}
        if start is not None:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            values["train/iteration_gpu_s"] = lambda: _elapsed_s(start, end)
        self.tracker.scalars(step, values)

    def recovered(self, group: dist.ProcessGroup | None, world: int, plan_step: int, source: str,
                  failed_at: float | None) -> None:  # fmt: skip
        """After `recover`: gather every rank's retrieval (collective) and log the job's recovery."""
        if not self.enabled or source == "fresh":
            return
        mine = torch.tensor(self.last_retrieve, dtype=torch.float64)
        gathered = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(gathered, mine, group=group)
        if not self.tracker.active:
            return
        self._failed_at = failed_at
        at = plan_step + 1
        values: dict[str, float] = {"marker/recovery": 1.0, "failure/resumed_from_step": plan_step}
        values.update(self._pending)
        self._pending.clear()
        for index, name in enumerate(SOURCES):
            rows = [row for row in gathered if int(row[2]) == index]
            if rows:
                slowest = max(float(row[0]) for row in rows)
                moved = sum(float(row[1]) for row in rows)
                values[f"recovery/retrieve_{name}_s"] = slowest
                values[f"recovery/shards_{name}"] = len(rows)
                if slowest > 0:
                    values[f"recovery/retrieve_{name}_gbps"] = moved / slowest / 1e9
        fired = newest_failure(self.run_dir)
        if failed_at is not None and fired is not None:
            kind, step = fired
            self.tracker.scalars(step, {f"marker/{kind}_failure": 1.0})
        self.tracker.scalars(at, values)

    def event(
        self, event: str, step: int, nbytes: int, duration_s: float, source: str | None, ok: bool
    ) -> None:
        """One EventLog record (rank 0's) as scalars."""
        if event == "retrieve":
            self.last_retrieve = (duration_s, nbytes, SOURCES.index(source) if source in SOURCES else -1)
        if not self.tracker.active:
            return
        gbps = nbytes / duration_s / 1e9 if duration_s > 0 and nbytes else None
        values: dict[str, float] = {}
        if event == "step":
            values["train/iteration_s"] = duration_s
        elif event == "first_step":
            values["train/iteration_s"] = values["recovery/first_step_s"] = duration_s
            if self._failed_at is not None:
                values["recovery/time_to_first_step_s"] = time.time() - self._failed_at
                self._failed_at = None
        elif event == "snapshot":
            values["ckpt/snapshot_s"] = duration_s
            values["ckpt/snapshot_gbps"] = gbps
        elif event == "commit" and source == "local":
            values["ckpt/commit_s"] = duration_s
        elif event == "commit":
            values["ckpt/replica_received_s"] = duration_s
            values["ckpt/replica_ok"] = float(ok)
        elif event == "replicate" and step != self._replicated:  # one record per peer, same timing
            self._replicated = step
            values["ckpt/replicate_s"] = duration_s
            values["ckpt/replicate_gbps"] = gbps
        elif event in ("persist", "disk_save", "disk_load"):
            prefix = "ckpt/persist" if event == "persist" else f"disk/{event.removeprefix('disk_')}"
            values[f"{prefix}_s"] = duration_s
            values[f"{prefix}_gbps"] = gbps
        elif event in ("detect", "restart"):
            self._pending[f"failure/{event}_s"] = duration_s
        elif event == "lost_steps":
            self._pending["failure/lost_steps"] = step  # placed with the next recovery record
        values = {k: v for k, v in values.items() if v is not None}
        if values:
            self.tracker.scalars(step, values)

    def flush(self) -> None:
        self.tracker.flush()

    def close(self) -> None:
        self.tracker.close()


class TrackedEventLog(EventLog):
    """An EventLog that also tells the run's tracker about every event it writes."""

    def __init__(self, inner: EventLog, tracker: RunTracker) -> None:  # shares inner's file
        self.__dict__.update(inner.__dict__)
        self._tracker = tracker

    def log(self, event: str, step: int, *, nbytes: int = 0, duration_s: float = 0.0,
            source: str | None = None, peer: int | None = None, ok: bool = True) -> None:  # fmt: skip
        super().log(event, step, nbytes=nbytes, duration_s=duration_s, source=source, peer=peer, ok=ok)
        self._tracker.event(event, step, nbytes, duration_s, source, ok)


def newest_failure(run_dir: Path) -> tuple[str, int] | None:
    """("software" | "hardware", step) of the newest fired failure marker, if any."""
    fired = sorted((run_dir / "faults").glob("fired*.json"), key=lambda p: p.stat().st_mtime)
    if not fired:
        return None
    spec = json.loads(fired[-1].read_text())["spec"]
    kind = "software" if spec.startswith("sw") else "hardware"
    return kind, int(spec.split("step=")[1].split(":")[0])


def _elapsed_s(start: torch.cuda.Event, end: torch.cuda.Event) -> float:
    end.synchronize()  # in the tracker's thread: the training thread never waits for the device
    return start.elapsed_time(end) / 1e3
