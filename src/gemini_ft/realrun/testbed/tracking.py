"""The job's view in TensorBoard or W&B: steps, checkpoints, failures and the configuration.

Workers do no tracking. Every rank writes its JSONL events (`gemini_ft.realrun.measurements`) as always, and
the launcher — the one process every failure spares — follows those files and the fired-failure
markers from a thread (`JobTracker`), turns them into scalars (`JobView`) and hands them to a
`gemini_ft.common.tracking.Tracker`, whose own thread writes them. So a dying worker loses no record, training
pays nothing, and each job is one TensorBoard run / one W&B run (`track_dir/<start time>-<job>`).
When the job has ended the follower reads the files once more, so the last events are tracked too.
`track_finished_run` tracks a finished run directory the same way. Metric names: see `METRICS`.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from gemini_ft.common.tracking import Tracker, open_tracker
from gemini_ft.realrun import markers
from gemini_ft.realrun.config import RealRunConfig
from gemini_ft.realrun.faults import parse_failures
from gemini_ft.realrun.testbed.progress import EventFollower

SOURCES = ("local", "peer", "persistent")
METRICS = {
    "train/loss": "rank 0's training loss, per step",
    "train/iteration_s": "iteration time, per step (the events' step duration; on CUDA after a stream sync)",
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
    "disk/save_s": "the disk baseline's DCP save (with disk/save_gbps); disk/load_s, disk/load_gbps",
}
HPARAM_TAGS = ("train/loss", "train/iteration_s", "recovery/time_to_first_step_s")
POLL_S = 0.5  # how often the launcher reads new events: records reach the tracker this late at most


def track_directory(cfg: RealRunConfig, job: str, t0: float) -> tuple[Path, str]:
    """Where this job's tracking goes, and its run name (start time first, so runs sort by age)."""
    name = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(t0))}-{job}"
    return (cfg.track_dir or cfg.out / "track") / name, name


class JobView:
    """Rank 0's view of the job, and the recovery of every rank, from the events as tracker calls.

    Events must come in time order per rank (as `EventFollower` yields them); rank 0's events
    after a failure (detect, restart, lost_steps) are held back and logged with its first step after
    the recovery, beside every rank's retrieval: that step's collectives mean every rank had
    finished (and logged) its retrieval before rank 0 could log it.
    """

    def __init__(self, tracker: Tracker, cfg: RealRunConfig) -> None:
        self.tracker = tracker
        self.cfg = cfg
        self._pending: dict[str, float] = {}  # rank 0's detect, restart and lost steps of this round
        self._failed_t: float | None = None  # the failure, on the events' clock (t_s)
        self._retrieves: dict[int, dict[str, Any]] = {}  # every rank's latest retrieval
        self._replicated = -1

    def events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            if event.get("event") == "retrieve":
                self._retrieves[int(event["rank"])] = event
            elif event.get("rank") == 0:
                self._rank0(event)

    def failure(self, spec: str) -> None:
        """A fired failure marker's spec (`gemini_ft.realrun.faults`): a marker at the step it struck."""
        (failure,) = parse_failures([spec], self.cfg.machines, self.cfg.procs_per_machine, self.cfg.steps)
        if failure.kind in ("sw", "hw"):
            kind = "software" if failure.kind == "sw" else "hardware"
            self.tracker.scalars(failure.step, {f"marker/{kind}_failure": 1.0})

    def _rank0(self, event: dict[str, Any]) -> None:
        kind, step = event["event"], int(event["step"])
        duration, nbytes = float(event.get("duration_s") or 0.0), int(event.get("bytes") or 0)
        source = event.get("source")
        gbps = nbytes / duration / 1e9 if duration > 0 and nbytes else None
        values: dict[str, float | None] = {}
        if kind in ("step", "first_step"):
            values["train/iteration_s"] = duration
            values["train/loss"] = event.get("loss")
            if kind == "first_step":
                values.update(self._recovery(step, event))
        elif kind == "snapshot":
            values["ckpt/snapshot_s"] = duration
            values["ckpt/snapshot_gbps"] = gbps
        elif kind == "commit" and source == "local":
            values["ckpt/commit_s"] = duration
        elif kind == "commit":
            values["ckpt/replica_received_s"] = duration
            values["ckpt/replica_ok"] = float(bool(event.get("ok", True)))
        elif kind == "replicate" and step != self._replicated:  # one record per peer, same timing
            self._replicated = step
            values["ckpt/replicate_s"] = duration
            values["ckpt/replicate_gbps"] = gbps
        elif kind in ("persist", "disk_save", "disk_load"):
            prefix = "ckpt/persist" if kind == "persist" else f"disk/{kind.removeprefix('disk_')}"
            values[f"{prefix}_s"] = duration
            values[f"{prefix}_gbps"] = gbps
        elif kind == "detect":  # a new round after a failure: what an aborted round held is void
            self._pending = {"failure/detect_s": duration}
            self._failed_t = None
            self._replicated = -1  # steps are redone from the checkpoint on, and replicated again
        elif kind == "restart" and "failure/detect_s" in self._pending:
            self._pending["failure/restart_s"] = duration
            # restart is logged `duration` after the worker started, which was detect_s after the failure
            self._failed_t = float(event["t_s"]) - duration - self._pending["failure/detect_s"]
        elif kind == "lost_steps":
            self._pending["failure/lost_steps"] = step  # its step column counts the steps to redo
        numbers = {k: float(v) for k, v in values.items() if v is not None}
        if numbers:
            self.tracker.scalars(step, numbers)

    def _recovery(self, step: int, event: dict[str, Any]) -> dict[str, float]:
        """The record of the recovery that ends with rank 0's first step `step` (resumed at step − 1)."""
        resumed = step - 1
        values = {"marker/recovery": 1.0, "failure/resumed_from_step": float(resumed), **self._pending}
        values["recovery/first_step_s"] = float(event.get("duration_s") or 0.0)
        if self._failed_t is not None:
            values["recovery/time_to_first_step_s"] = float(event["t_s"]) - self._failed_t
        rows = [e for e in self._retrieves.values() if int(e["step"]) == resumed]
        for name in SOURCES:
            mine = [e for e in rows if e.get("source") == name]
            if mine:
                slowest = max(float(e.get("duration_s") or 0.0) for e in mine)
                moved = sum(int(e.get("bytes") or 0) for e in mine)
                values[f"recovery/retrieve_{name}_s"] = slowest
                values[f"recovery/shards_{name}"] = float(len(mine))
                if slowest > 0:
                    values[f"recovery/retrieve_{name}_gbps"] = moved / slowest / 1e9
        self._pending, self._failed_t, self._retrieves = {}, None, {}
        return values


class FiredFailures:
    """The specs of failure markers (`gemini_ft.realrun.markers`) not seen before."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._seen: set[int] = set()

    def new_specs(self) -> list[str]:
        # A marker created but not yet written (O_EXCL, then the JSON) does not parse: read next time.
        specs = []
        for fired in markers.fired_failures(self.run_dir):
            if fired.index not in self._seen:
                self._seen.add(fired.index)
                specs.append(fired.spec)
        return specs


def _open(cfg: RealRunConfig, kind: str, directory: Path, name: str, job: str) -> Tracker:
    config = cfg.model_dump(mode="json")
    tracker = open_tracker(kind, directory, name=name, config=config, online=cfg.track_online, run_id=job)
    tracker.hparams(config, tags=HPARAM_TAGS)
    return tracker


class JobTracker:
    """The launcher's side: follows a running job's files from a thread and tracks them (`--track`)."""

    def __init__(self, cfg: RealRunConfig, job: str, t0: float, poll_s: float = POLL_S) -> None:
        self.enabled = cfg.track != "none"
        self.directory: Path | None = None
        self._thread: threading.Thread | None = None
        if not self.enabled:
            return
        self.directory, name = track_directory(cfg, job, t0)
        self.tracker = _open(cfg, cfg.track, self.directory, name, job)
        self.view = JobView(self.tracker, cfg)
        self.events = EventFollower(cfg.out)
        self.fired = FiredFailures(cfg.out)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._failed = False
        self._thread = threading.Thread(target=self._follow, name="track-job", daemon=True)
        self._thread.start()

    def poll(self) -> None:
        """Track what was written since the last poll (events first: markers carry no time order)."""
        if self._failed:
            return
        try:
            self.view.events(self.events.new_events())
            for spec in self.fired.new_specs():
                self.view.failure(spec)
        except Exception as exc:  # tracking must never take the launcher (and so the job) down
            self._failed = True
            print(f"gemini-ft: warning: tracking stopped following the job: {exc!r}", file=sys.stderr)

    def close(self) -> bool:
        """After the job's processes have ended: read everything they wrote, then close the tracker."""
        if self._thread is None:
            return True
        self._stop.set()
        self._thread.join()
        self._thread = None
        self.poll()  # the drain: events written since the last poll, up to each file's end
        return self.tracker.close() and not self._failed

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()


def track_finished_run(run_dir: Path, kind: str, directory: Path, *, online: bool = False) -> Path:
    """Track the run in `run_dir` after the fact, as its launcher would have: one run in `directory`."""
    run_dir = Path(run_dir)
    cfg = RealRunConfig.model_validate_json((run_dir / "config.json").read_text())
    events = EventFollower(run_dir).new_events()
    job = str(events[0].get("run_id", "job")) if events else "job"
    tracker = _open(cfg.model_copy(update={"track_online": online}), kind, Path(directory), job, job)
    view = JobView(tracker, cfg)
    view.events(events)
    for spec in FiredFailures(run_dir).new_specs():
        view.failure(spec)
    tracker.close()
    return Path(directory)
