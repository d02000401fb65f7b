"""Typed records of one simulated run: a `RunSummary` and one `FailureRecord` per failure event.

Their fields, in order, are the columns of the `summary` and `failures` tables; nothing else lists
those columns. A sweep adds its own columns (the grid point and the swept values) beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from gemini_ft.sim.costs import RECOVERY_STEPS, SOURCES

KEY_COLUMNS = ("scenario", "seed", "policy")
"""The summary columns that tag each failure row with its run."""


@dataclass(slots=True)
class FailureRecord:
    """One failure event and what its recovery cost; filled in while the recovery runs."""

    time_s: float
    machines: int
    machine_ids: str
    type: str
    simultaneous: bool
    """It struck while an earlier recovery was still under way."""
    recovered_from: str
    """local | peer | persistent"""
    recovery_completed: bool = False
    """Its recovery finished without another failure."""
    lost_progress_s: float = 0.0
    detection_s: float = 0.0
    replacement_s: float = 0.0
    serialization_s: float = 0.0
    retrieval_s: float = 0.0
    warmup_s: float = 0.0
    wasted_s: float = 0.0
    """Lost progress plus every recovery step."""
    spare_wait_s: float = 0.0
    """Waiting for a repaired machine because the spare pool was empty (operations model)."""
    no_spare: bool = False
    """It found the spare pool empty (operations model)."""
    misdiagnosed: bool = False
    """Its diagnosis blamed a healthy machine, which was swapped out; the faulty one stayed (operations)."""
    repeat: bool = False
    """It struck a faulty machine left in the job by a wrong diagnosis or a silently failed repair."""

    def close(self) -> None:
        steps = (
            self.detection_s + self.replacement_s + self.serialization_s + self.retrieval_s + self.warmup_s
        )
        self.wasted_s = self.lost_progress_s + steps + self.spare_wait_s

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FAILURE_COLUMNS}


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run: where the wall-clock time went and how failures were recovered."""

    scenario: str
    seed: int
    policy: str
    placement: str
    replicas: int
    machines: int
    failure_rate_per_machine_per_day: float
    nic_bandwidth_gbps: float
    storage_bandwidth_gbps: float
    duration_s: float
    useful_s: float
    wasted_s: float
    effective_ratio: float
    """Useful training time ÷ wall-clock time."""
    wasted_checkpoint_s: float
    wasted_lost_progress_s: float
    wasted_detection_s: float
    wasted_replacement_s: float
    wasted_serialization_s: float
    wasted_retrieval_s: float
    wasted_warmup_s: float
    failures: int
    software_failures: int
    hardware_failures: int
    simultaneous_failures: int
    recoveries_local: int
    recoveries_peer: int
    recoveries_persistent: int
    fraction_from_cpu_memory: float
    ckpt_interval_s: float
    persistent_interval_s: float
    ckpt_time_s: float
    iteration_overhead_fraction: float
    events: int
    """SimPy events processed (independent of the iteration count)."""
    wasted_spare_wait_s: float
    """Recovery time spent waiting for a repaired machine because the spare pool was empty."""
    spare_waits: int
    """Failures that found the spare pool empty."""
    misdiagnoses: int
    repeat_failures: int
    """Failures of faulty machines left in the job (wrong diagnosis, silently failed repair)."""
    wasted_repeat_failures_s: float
    """Wasted time of those repeat failures (already counted in the components above, not added)."""
    retired_machines: int
    persistent_uploads: int = 0
    """Persistent checkpoints whose upload started."""
    persistent_skipped: int = 0
    """Persistent checkpoints skipped because the previous upload was still in flight (counted when
    training reaches the next checkpoint it does take; a failure on the way forgets them)."""

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SUMMARY_COLUMNS}


STEP_FIELDS = {step: f"{step}_s" for step in RECOVERY_STEPS}
"""The `FailureRecord` field of each recovery step."""
FAILURE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(FailureRecord))
SUMMARY_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RunSummary))
WASTE_COMPONENTS: tuple[str, ...] = ("checkpoint", "lost_progress", *RECOVERY_STEPS, "spare_wait")
"""The parts of `wasted_s`, each a `wasted_<part>_s` summary column. `spare_wait` is the part of a
replacement step spent waiting for the spare pool (operations model), charged apart from it."""


@dataclass(slots=True)
class RecordTally:
    """What a run's summary reports over its failure records: each waste component's sum, in the order the
    failures happened, and the counts."""

    waste_s: dict[str, float]
    """`lost_progress`, each recovery step and `spare_wait` (the components records own)."""
    failures: int
    hardware: int
    simultaneous: int
    recovered_from: dict[str, int]
    """Recoveries per checkpoint source."""
    no_spare: int
    misdiagnosed: int
    repeats: int
    repeat_wasted_s: float

    @classmethod
    def of(cls, records: list[FailureRecord]) -> RecordTally:
        """Close every record and tally them in one pass (a 16,384-machine run has thousands)."""
        lost = detection = replacement = serialization = retrieval = warmup = spare_wait = 0.0
        repeat_wasted = 0.0
        hardware = simultaneous = no_spare = misdiagnosed = repeats = 0
        recovered = dict.fromkeys(SOURCES, 0)
        for r in records:
            r.close()
            lost += r.lost_progress_s
            detection += r.detection_s
            replacement += r.replacement_s
            serialization += r.serialization_s
            retrieval += r.retrieval_s
            warmup += r.warmup_s
            spare_wait += r.spare_wait_s
            hardware += r.type == "hardware"
            simultaneous += r.simultaneous
            recovered[r.recovered_from] += 1
            no_spare += r.no_spare
            misdiagnosed += r.misdiagnosed
            if r.repeat:
                repeats += 1
                repeat_wasted += r.wasted_s
        waste = {
            "lost_progress": lost,
            "detection": detection,
            "replacement": replacement,
            "serialization": serialization,
            "retrieval": retrieval,
            "warmup": warmup,
            "spare_wait": spare_wait,
        }
        assert tuple(waste) == WASTE_COMPONENTS[1:]  # a new recovery step needs its own sum above
        return cls(
            waste,
            len(records),
            hardware,
            simultaneous,
            recovered,
            no_spare,
            misdiagnosed,
            repeats,
            repeat_wasted,
        )
