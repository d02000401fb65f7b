"""The job's checkpoints during one simulated run: in-memory snapshots and persistent uploads.

In-memory snapshots sit on a grid of training progress; the engine tells `note_snapshots` how far
training got, and a failure asks (`advance_in_memory`, `restore_point`) which snapshot was complete
and whether some holder of every machine's replicas survived. Persistent checkpoints upload through
the shared storage (`gemini_ft.sim.storage`), one at a time: `first_uploadable` skips the grid points that fall
due while the previous upload is still running, and an upload still running at a failure dies.
The engine (`gemini_ft.sim.engine`) owns the clock and the phases; this owns what a failure can restore from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from math import floor

from gemini_ft.placement.layout import Placement
from gemini_ft.sim.policies import CheckpointPlan
from gemini_ft.sim.storage import SharedStorage, Transfer

_EPS = 1e-9


@dataclass
class MemCheckpoint:
    """The newest complete in-memory checkpoint and which machines lost their CPU memory since."""

    progress: float
    lost: set[int] = field(default_factory=set)
    replicated: bool = True  # False after a restore from storage: each machine holds only its own shard
    intact: bool = True
    """Every machine's checkpoint survives somewhere despite `lost`: kept up to date by `lose`, since
    `lost` only grows (once a checkpoint is gone it stays gone), so a failure that loses no CPU memory
    asks nothing of the placement."""


class JobCheckpoints:
    """In-memory and persistent checkpoints of one run of `plan`, uploads of `persistent_bytes` each."""

    def __init__(self, plan: CheckpointPlan, storage: SharedStorage, persistent_bytes: float,
                 placement: Placement | None) -> None:  # fmt: skip
        self.plan = plan
        self.storage = storage
        self.persistent_bytes = persistent_bytes
        self.placement = placement
        self.mem: MemCheckpoint | None = None
        self.mem_taken: list[tuple[float, float]] = []  # last two in-memory snapshots: (progress, wall time)
        self.persistent_progress = 0.0  # the initial model counts as persisted
        self.pending: list[tuple[float, Transfer]] = []  # (progress, its upload)
        self.uploads = 0
        # Read at every training stretch and failure: looked up once.
        self._grid = plan.mem_interval_s
        self._wall_per_progress = 1.0 / plan.progress_rate
        self._mem_ckpt_s = plan.mem_ckpt_time_s

    # ---- persistent ---------------------------------------------------------------------------
    def start_upload(self, progress: float, now: float) -> None:
        self.promote(now, cancel=False)  # the previous upload is complete by now
        self.uploads += 1
        self.pending.append((progress, self.storage.start("upload", self.persistent_bytes, now)))

    def promote(self, now: float, cancel: bool = True) -> None:
        """Uploads finished by `now` become the persistent checkpoint; at a failure (`cancel`) every
        unfinished transfer dies with the job."""
        if not self.pending:
            return  # nothing in flight (the storage only ever carries the uploads listed here)
        for progress, upload in self.pending:
            if self.storage.finish_s(upload) <= now:
                self.persistent_progress = max(self.persistent_progress, progress)
        self.pending.clear()
        if cancel:
            self.storage.cancel_all(now)

    def first_uploadable(self, target: float, now: float, progress: float) -> tuple[float, int]:
        """The first persistent grid point from `target` on that training (at `progress` at `now`)
        reaches once the upload in flight is done, and how many due points it skips (arithmetic:
        skipped points are no events)."""
        if not self.pending:
            return target, 0
        rate = self.plan.progress_rate
        pending, finish_s = self.pending, self.storage.finish_s
        # At most one upload is in flight (the engine's rule), so this is usually one lookup.
        busy_until = finish_s(pending[0][1]) if len(pending) == 1 else max(finish_s(t) for _, t in pending)
        reached = now + (target - progress) / rate
        if reached >= busy_until - _EPS:
            return target, 0
        wall_per_point = self.plan.persistent_interval_s / rate
        skipped = math.ceil((busy_until - reached) / wall_per_point - _EPS)
        return target + skipped * self.plan.persistent_interval_s, skipped

    # ---- in memory ----------------------------------------------------------------------------
    def note_snapshots(self, start_wall: float, start_progress: float, end_progress: float) -> None:
        """Record the in-memory snapshots taken while progress went from start to end (grid points)."""
        grid = self._grid
        if grid is None:
            return
        last = floor(end_progress / grid + _EPS) * grid
        # Only the last two grid points matter (see `advance_in_memory`); written out, as this runs
        # for every stretch of training.
        taken, wall_per_progress, after = self.mem_taken, self._wall_per_progress, start_progress + _EPS
        point = last - grid
        if point > after:
            taken.append((point, start_wall + (point - start_progress) * wall_per_progress))
        if last > after:
            taken.append((last, start_wall + (last - start_progress) * wall_per_progress))
        if len(taken) > 2:
            del taken[:-2]

    def advance_in_memory(self, now: float) -> None:
        """The newest snapshot whose replicas were complete by `now` replaces the in-memory checkpoint."""
        for progress, taken_at in reversed(self.mem_taken):
            if taken_at + self._mem_ckpt_s <= now + _EPS:
                if self.mem is None or progress > self.mem.progress:
                    self.mem = MemCheckpoint(progress)
                return

    def lose(self, machines: set[int]) -> None:
        """`machines` lost their CPU memory (a hardware failure)."""
        mem = self.mem
        if mem is None:
            return
        new = machines - mem.lost
        if not new:
            return
        mem.lost |= new
        if mem.intact:
            placement = self.placement
            mem.intact = (
                mem.replicated and placement is not None and placement.still_recoverable(mem.lost, new)
            )

    def restore_point(self) -> tuple[str, float]:
        """Where the job restarts from: CPU memory when every machine's checkpoint survives somewhere."""
        mem = self.mem
        if mem is not None and mem.intact and (self.placement is not None or not mem.replicated):
            return ("peer" if mem.lost else "local"), mem.progress
        return "persistent", self.persistent_progress

    def restarted(self, source: str, progress: float) -> None:
        """A recovery from `source` completed at `progress`: snapshots start afresh; after a restore from
        storage each machine holds only its own shard of that state (no replicas yet)."""
        self.mem_taken.clear()
        if source == "persistent":
            self.mem = MemCheckpoint(progress, replicated=False) if self.placement else None
