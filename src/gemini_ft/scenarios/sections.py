"""The scenario's sections: one frozen, validated pydantic model per part of a scenario.

`gemini_ft.scenarios.schema.Scenario` puts them together and checks what spans sections. Units live in field
names (`_s`, `_gbps`, `_gib`, `_bytes`, `_per_day`); the defaults are the Gemini paper's main set-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from gemini_ft.placement.registry import PLACEMENTS

GIB = 1024**3
POLICIES = ("gemini", "strawman", "highfreq", "young-daly")
SCHEMES = ("baseline", "blocking", "naive", "no-pipeline", "gemini")
DEFAULT_MAX_SWEEP_POINTS = 10_000

Policy = Literal["gemini", "strawman", "highfreq", "young-daly"]
PlacementName = Literal[PLACEMENTS]  # type: ignore[valid-type]
Scheme = Literal["baseline", "blocking", "naive", "no-pipeline", "gemini"]


class Section(BaseModel):
    """Base of every scenario section: frozen, no unknown fields, finite numbers, no booleans as numbers,
    and strict types: a string is no number or boolean ("16", "yes"), a float no count (paths alone
    are read from strings, as TOML writes them)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False, strict=True
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads `machines = true` as 1; a boolean is never a count or a rate.
        # Other fields (names, choices, paths) leave a boolean to their own validation and its message.
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            kinds = (annotation, *get_args(annotation))
            if bool not in kinds and (int in kinds or float in kinds):
                raise ValueError("must be a number, not a boolean")
        return value


class ClusterConfig(Section):
    """The training machines and their links."""

    machines: int = Field(16, ge=1, le=1_000_000, description="Number of training machines N.")
    gpus_per_machine: int = Field(8, ge=1, le=64, description="GPUs per machine.")
    gpu_memory_gib: float = Field(40.0, gt=0, description="Memory of one GPU.")
    cpu_memory_gib: float = Field(1152.0, gt=0, description="CPU memory of one machine.")
    nic_bandwidth_gbps: float = Field(400.0, gt=0, description="Network bandwidth of one machine.")
    standby_machines: int = Field(0, ge=0, description="Idle machines that replace a failed one at once.")
    replacement_delay_s: float = Field(
        330.0, ge=0, description="Time to get a new machine when no standby is left (paper: 4-7 min)."
    )
    failure_domain_size: int = Field(
        4,
        ge=1,
        description="Machines per failure domain (rack/switch); correlated failures take a whole domain.",
    )
    gpu_tflops: float = Field(
        150.0,
        gt=0,
        description="Sustained training throughput of one GPU in TFLOP/s (for the interleaving model).",
    )


class StorageConfig(Section):
    """Remote persistent storage (e.g. FSx, S3) shared by all machines."""

    bandwidth_gbps: float = Field(20.0, gt=0, description="Aggregate bandwidth of remote storage.")
    latency_s: float = Field(0.0, ge=0, description="Fixed latency of one checkpoint write or read.")


class ModelConfig(Section):
    """The model being trained and its checkpoint."""

    name: str = Field("gpt2-100b", description="A label for the model.")
    parameters: float = Field(100e9, gt=0, description="Number of parameters.")
    ckpt_bytes_per_param: float = Field(
        12.0, gt=0, description="Checkpoint bytes per parameter (12 = fp32 weights + Adam m and v)."
    )
    iteration_time_s: float = Field(
        62.0, gt=0, description="Time of one training iteration without checkpointing."
    )
    layers: int | None = Field(
        80, ge=1, le=10_000,
        description="Transformer layers (for the interleaving model, which builds each layer's traffic;"
        " Llama 3 405B has 126).",
    )  # fmt: skip
    hidden_size: int | None = Field(10240, ge=1, description="Hidden size (for the interleaving model).")
    sequence_length: int = Field(1024, ge=1, description="Tokens per sample.")
    micro_batch_size: int = Field(8, ge=1, description="Samples per GPU per iteration.")
    attention_heads: int | None = Field(
        None, ge=1, description="Attention heads (activation-memory estimate); None = hidden_size / 128."
    )
    comm_bytes_per_param: float = Field(
        2.0,
        gt=0,
        description="Bytes per parameter in ZeRO-3 all-gathers and reduce-scatters (2 = fp16/bf16).",
    )
    state_bytes_per_param: float = Field(
        16.0,
        gt=0,
        description="GPU bytes per parameter of ZeRO-3 sharded model state (16 = fp16 weights, grads; fp32 master, m, v).",
    )
    activation_checkpointing: bool = Field(
        True,
        description="Only layer inputs are kept for backward (activation-memory estimate of the interleaving model).",
    )

    @property
    def ckpt_bytes_total(self) -> float:
        return self.parameters * self.ckpt_bytes_per_param


class FailureConfig(Section):
    """How machines fail."""

    distribution: Literal["exponential", "weibull", "lognormal", "trace"] = Field(
        "exponential", description="Law of the time between failures of one machine, or a replayed trace."
    )
    rate_per_machine_per_day: float = Field(
        0.015, ge=0, description="Failures per machine per day (OPT-175B: 1.5% of instances per day)."
    )
    weibull_shape: float = Field(1.0, gt=0, description="Weibull shape k (k < 1: infant mortality).")
    trace_file: Path | None = Field(
        None, strict=False, description="CSV with columns time_s, machine, type (software|hardware)."
    )
    hardware_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of failures that lose the machine (the rest are software failures).",
    )
    correlated_fraction: float = Field(
        0.0, ge=0, le=1, description="Share of failure events that take down a whole failure domain at once."
    )
    strike_during_recovery: bool = Field(
        True,
        description="Failures can strike while a recovery is under way (they restart it); false drops them,"
        " as the paper's Fig. 15 and the closed form 1/(1 + ΛR) assume.",
    )

    lognormal_sigma: float = Field(
        1.0,
        gt=0,
        le=10,
        description="Shape σ of the lognormal time between failures of one machine (its mean is"
        " 1 / rate_per_machine_per_day; the coefficient of variation is √(e^σ² − 1)).",
    )

    @model_validator(mode="after")
    def _trace_needs_file(self) -> FailureConfig:
        if self.distribution == "trace" and self.trace_file is None:
            raise ValueError("failures.trace_file is required when failures.distribution = 'trace'")
        return self


class RecoveryConfig(Section):
    """Fixed costs of a recovery (paper §7: ≈7 min for a software failure, ≈12 min for hardware)."""

    detection_s: float = Field(
        15.0,
        ge=0,
        description="Time to detect a failure (a software one, where hardware_detection_s is set).",
    )
    hardware_detection_s: float | None = Field(
        None,
        ge=0,
        description="Time to detect a hardware failure (a dead machine: its rendezvous keep-alives must"
        " expire first); None = detection_s.",
    )
    serialization_s: float | None = Field(
        None,
        ge=0,
        description="Time to serialize the in-memory replicas before a restart from CPU memory; None = m replicas"
        " of one machine's shard at checkpoint.serialization_gbps (paper: 162 s for 2 x 75 GB).",
    )
    warmup_s: float = Field(
        253.0, ge=0, description="Restart warm-up (process start, NCCL set-up, data loader)."
    )


class CheckpointConfig(Section):
    """The checkpoint policy and where in-memory replicas go."""

    policy: Policy = Field("gemini", description=f"One of {', '.join(POLICIES)}.")
    placement: PlacementName = Field("group", description=f"One of {', '.join(PLACEMENTS)}.")
    replicas: int = Field(
        2, ge=1, le=64, description="Copies m of each machine's checkpoint, its own included."
    )
    in_memory_every_iterations: int = Field(
        1, ge=1, description="Iterations between in-memory checkpoints (gemini)."
    )
    persistent_interval_s: float = Field(
        10800.0, gt=0, description="Time between persistent checkpoints (gemini and strawman backups)."
    )
    iteration_overhead_fraction: float | None = Field(
        None,
        ge=0,
        description="Per-iteration slowdown of in-memory checkpointing; None = derive it from the interleaving model.",
    )
    young_daly_formula: Literal["young", "daly"] = Field(
        "daly", description="Which optimal-interval formula."
    )
    serialization_gbps: float = Field(
        7.4,
        gt=0,
        description="Per-machine speed of serializing checkpoint state to CPU memory (torch.save); a persistent"
        " checkpoint stalls training this long for one replica (paper: 2 x 75 GB in 162 s ≈ 7.4 Gbps).",
    )
    transfer_latency_s: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Fixed cost of one shard transfer between machines, paid once per replication round (the"
        " m − 1 peers are sent to concurrently) and once per retrieval from a peer: t = latency + bytes / NIC"
        " bandwidth.",
    )
    fetch_latency_s: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="Fixed cost of one retrieval from a peer during a recovery (no training shares the"
        " host then); None = transfer_latency_s.",
    )
    local_retrieval_latency_s: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Fixed cost of restoring a shard from the machine's own CPU memory: t = latency + bytes"
        " per GPU / local_retrieval_gbps.",
    )
    local_retrieval_gbps: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Per-GPU bandwidth of a restore from the machine's own CPU memory (CPU→GPU, the first"
        " work of a restarted process); None = interleave.gpu_to_cpu_gbps, the snapshot's copy rate.",
    )
    replication_gbps: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Effective per-machine bandwidth of a replication round while training runs (it shares the"
        " links and CPUs with training traffic): t = transfer_latency_s + (m − 1) shard bytes / this; None ="
        " cluster.nic_bandwidth_gbps. Retrieval from a peer during a recovery has the NIC to itself and"
        " always uses cluster.nic_bandwidth_gbps.",
    )
    costs_at_machines: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Price every checkpoint and recovery step as if the job ran on this many machines (the"
        " paper's Fig. 15 keeps the 16-instance costs as N grows); failures, placement and the failure rate"
        " stay the scenario's. None = the scenario's own machines (the shard per machine shrinks as N grows).",
    )


class InterleaveConfig(Section):
    """Checkpoint traffic interleaving within one iteration (paper §5, Algorithm 2)."""

    scheme: Scheme = Field("gemini", description=f"One of {', '.join(SCHEMES)}.")
    alpha_s: float = Field(1e-4, ge=0, description="Fixed cost α of sending one chunk: f(s) = α + s/B.")
    gpu_buffer_mib: float = Field(128.0, gt=0, description="GPU memory R reserved for checkpoint traffic.")
    sub_buffers: int = Field(
        4, ge=1, le=64, description="Sub-buffers p that R is split into (p ≥ 2 pipelines)."
    )
    mu: float = Field(0.8, gt=0, lt=1, description="Share μ of an idle span that checkpoint traffic may use.")
    gpu_to_cpu_gbps: float = Field(100.0, gt=0, description="GPU→CPU copy bandwidth on the receiver.")
    timeline_file: Path | None = Field(
        None, strict=False, description="A measured iteration timeline (CSV) instead of the model."
    )
    chunk_mib: float | None = Field(
        None, gt=0, description="Largest checkpoint chunk; None = one sub-buffer R/p (the paper's choice)."
    )
    optimizer_step_s: float = Field(
        0.0,
        ge=0,
        description="Optimizer step at the end of each iteration, after the last reduce-scatter: GPU work with"
        " no training traffic on the NIC (paper, GPT-2 40B on p3dn: the largest idle span, 1.6 s).",
    )
    runtime_reserved_gib: float = Field(
        2.0,
        ge=0,
        description="GPU memory held by the CUDA context, NCCL buffers and allocator fragmentation.",
    )


class OperationsConfig(Section):
    """Cluster operations (off by default): a repair pipeline feeding a finite spare pool, bad machines,
    wrong diagnoses, retirement and host selection. When enabled, cluster.standby_machines is the size of
    the spare pool and failed machines come back to it from repair instead of new ones arriving after
    cluster.replacement_delay_s."""

    enabled: bool = Field(False, description="Model cluster operations; False keeps the plain model.")
    bad_machine_fraction: float = Field(
        0.0, ge=0, le=1, description="Share of machines (spares and replacements included) that are bad."
    )
    bad_rate_multiplier: float = Field(
        1.0,
        ge=1,
        le=1000,
        description="A bad machine fails this many times as often as failures.rate_per_machine_per_day.",
    )
    repair_distribution: Literal["fixed", "exponential", "lognormal"] = Field(
        "lognormal", description="Law of each repair stage's duration around its mean."
    )
    repair_lognormal_sigma: float = Field(
        1.0, gt=0, le=10, description="Shape σ of lognormal repair durations."
    )
    auto_repair_mean_s: float = Field(
        7200.0, ge=0, description="Mean duration of the automatic repair every failed machine goes to first."
    )
    auto_repair_fix_fraction: float = Field(
        0.6, ge=0, le=1, description="Share of automatic repairs that fix the machine; the rest go to manual."
    )
    manual_repair_mean_s: float = Field(
        259200.0, ge=0, description="Mean duration of a manual repair (after a failed automatic one)."
    )
    silent_repair_failure_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of repairs that report success but leave the machine faulty (it fails again in use).",
    )
    misdiagnosis_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of hardware failures blamed on a wrong, healthy machine: it is swapped out and"
        " repaired while the faulty one stays in the job.",
    )
    refail_after_restart_s: float = Field(
        60.0,
        ge=0,
        description="A faulty machine left in the job fails again this long after the job restarts on it.",
    )
    swap_in_s: float = Field(0.0, ge=0, description="Time to bring a spare from the pool into the job.")
    retire_after_failures: int | None = Field(
        None,
        ge=1,
        description="Retire a machine at its k-th failure within retire_window_days; None = never.",
    )
    retire_window_days: float = Field(30.0, gt=0, description="Window in which retirement counts failures.")
    new_machine_days: float = Field(
        14.0, gt=0, description="A retired machine's replacement joins the spare pool this long after."
    )
    host_selection: Literal["fewest-failures", "first-ready"] = Field(
        "fewest-failures",
        description="Which spare enters the job: the one with the fewest past failures, or the longest idle.",
    )


class RunConfig(Section):
    """How long to simulate and with which seeds."""

    duration_days: float = Field(30.0, gt=0, le=36500, description="Simulated wall-clock duration.")
    seeds: int = Field(1, ge=1, le=100_000, description="Independent repetitions.")
    base_seed: int = Field(
        0, ge=0, description="Seed of the first repetition; repetition i uses base_seed + i."
    )
    max_sweep_points: int = Field(
        DEFAULT_MAX_SWEEP_POINTS,
        ge=1,
        description="Largest [sweep] grid accepted (points before seeds); raise it for a bigger grid.",
    )
