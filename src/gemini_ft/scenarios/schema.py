"""The scenario schema: one frozen, validated pydantic model shared by sim, realrun and calibration.

Units live in field names (`_s`, `_gbps`, `_gib`, `_bytes`, `_per_day`). The defaults are the Gemini
paper's main set-up (GPT-2 100B on 16 p4d.24xlarge); presets in `scenarios/presets/` override them.
Derived quantities (checkpoint bytes per machine, transfer times) are properties, never stored. The
sections are `gemini_ft.scenarios.sections`, re-exported here; `Scenario` joins them and checks what spans them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from gemini_ft.common.errors import InvalidScenario, format_validation_error
from gemini_ft.scenarios import budgets
from gemini_ft.scenarios.budgets import MAX_FAILURE_DRAWS
from gemini_ft.scenarios.overrides import apply_overrides, flatten_sweep
from gemini_ft.scenarios.sections import (
    DEFAULT_MAX_SWEEP_POINTS,
    GIB,
    POLICIES,
    SCHEMES,
    CheckpointConfig,
    ClusterConfig,
    FailureConfig,
    InterleaveConfig,
    ModelConfig,
    OperationsConfig,
    PlacementName,
    Policy,
    RecoveryConfig,
    RunConfig,
    Scheme,
    Section,
    StorageConfig,
)

__all__ = [
    "DEFAULT_MAX_SWEEP_POINTS",
    "GIB",
    "MAX_FAILURE_DRAWS",
    "POLICIES",
    "SCHEMES",
    "SECTION_MODELS",
    "CheckpointConfig",
    "ClusterConfig",
    "FailureConfig",
    "InterleaveConfig",
    "ModelConfig",
    "OperationsConfig",
    "PlacementName",
    "Policy",
    "RecoveryConfig",
    "RunConfig",
    "Scenario",
    "Scheme",
    "Section",
    "StorageConfig",
    "allowed_fields",
]


class Scenario(Section):
    """A whole scenario. `sweep` maps field paths (e.g. "checkpoint.policy") to lists of values."""

    name: str = Field("custom", description="Scenario name.")
    description: str = Field("", description="One sentence on what it models.")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Machines and links.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Remote persistent storage.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Model and checkpoint size.")
    failures: FailureConfig = Field(default_factory=FailureConfig, description="Failure process.")
    recovery: RecoveryConfig = Field(default_factory=RecoveryConfig, description="Recovery costs.")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig, description="Checkpoint policy.")
    interleave: InterleaveConfig = Field(
        default_factory=InterleaveConfig, description="Traffic interleaving."
    )
    run: RunConfig = Field(default_factory=RunConfig, description="Duration and seeds.")
    operations: OperationsConfig = Field(
        default_factory=OperationsConfig, description="Repair pipeline, spare pool and bad machines."
    )
    sweep: dict[str, list[Any]] = Field(default_factory=dict, description="Field path → values to sweep.")

    @field_validator("sweep")
    @classmethod
    def _sweep_values_non_empty(cls, sweep: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for path, values in sweep.items():
            if not values:
                raise ValueError(f"sweep.{path} needs at least one value")
        return sweep

    @classmethod
    def from_data(cls, data: Mapping[str, Any], source: str = "") -> Scenario:
        """Scenario data as read from TOML (nested or flat `[sweep]`) → a validated Scenario.

        Errors are `InvalidScenario` naming the field path, the value and what is allowed."""
        data = dict(data)
        if "sweep" in data:
            data["sweep"] = flatten_sweep(data["sweep"])
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            message = format_validation_error(exc, allowed_fields=allowed_fields())
            raise InvalidScenario(f"{source}: {message}" if source else message) from None

    def with_overrides(self, overrides: Mapping[str, Any], source: str = "") -> Scenario:
        """This scenario with each dotted field path set (validated); an overridden swept field is fixed."""
        data = apply_overrides(self.model_dump(mode="python"), overrides, allowed_fields())
        return Scenario.from_data(data, source)

    @property
    def sweep_points(self) -> int:
        """Points of the `[sweep]` grid (before seeds)."""
        return math.prod(len(values) for values in self.sweep.values())

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if self.sweep_points > self.run.max_sweep_points:
            sizes = " × ".join(str(len(v)) for v in self.sweep.values())
            raise ValueError(
                f"sweep: the grid has {sizes} = {self.sweep_points:,} points, more than run.max_sweep_points"
                f" = {self.run.max_sweep_points:,}; raise it with --set run.max_sweep_points=N"
            )
        budgets.check(self)  # what the run would hold or do, estimated before any of it
        if self.checkpoint.replicas > self.cluster.machines:
            raise ValueError(
                f"checkpoint.replicas = {self.checkpoint.replicas}: must be at most cluster.machines"
                f" = {self.cluster.machines}"
            )
        if self.checkpoint.policy == "gemini" and self.cpu_memory_needed_gib > self.cluster.cpu_memory_gib:
            raise ValueError(
                f"checkpoint.replicas = {self.checkpoint.replicas}: {self.checkpoint.replicas} replicas of a"
                f" {self.ckpt_bytes_per_machine / GIB:.0f} GiB shard need {self.cpu_memory_needed_gib:.0f} GiB of"
                f" CPU memory per machine, more than cluster.cpu_memory_gib = {self.cluster.cpu_memory_gib:g}"
            )
        return self

    # ---- derived quantities -------------------------------------------------------------------
    @property
    def failure_draws_expected(self) -> float:
        """Mean failures a run draws (`budgets.failure_draws`); 0 for a trace, whose size is the file's."""
        return budgets.failure_draws(self)

    @property
    def ckpt_bytes_total(self) -> float:
        """Bytes of one full checkpoint of the job."""
        return self.model.ckpt_bytes_total

    @property
    def ckpt_bytes_per_machine(self) -> float:
        return self.ckpt_bytes_total / self.cluster.machines

    @property
    def ckpt_bytes_per_gpu(self) -> float:
        return self.ckpt_bytes_per_machine / self.cluster.gpus_per_machine

    @property
    def cpu_memory_needed_gib(self) -> float:
        """CPU memory one machine needs to hold m replicas (m shards of the same size)."""
        return self.ckpt_bytes_per_machine * self.checkpoint.replicas / GIB

    @property
    def failure_domains(self) -> int:
        return math.ceil(self.cluster.machines / self.cluster.failure_domain_size)


SECTION_MODELS: dict[str, type[Section]] = {
    name: info.annotation  # type: ignore[misc]
    for name, info in Scenario.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, Section)
}


def allowed_fields() -> dict[str, list[str]]:
    """Known field names per section path ('' is the top level), for 'unknown field' errors."""
    table = {"": list(Scenario.model_fields)}
    for name, model in SECTION_MODELS.items():
        table[name] = list(model.model_fields)
    return table
