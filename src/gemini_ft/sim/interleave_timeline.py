"""The training timeline of one ZeRO-3 iteration, seen by one GPU, and its network idle spans.

Either derived from the model architecture (per-layer all-gathers and reduce-scatters, ring cost over
the GPU's share of the machine NIC, compute from 6 × params × tokens at `cluster.gpu_tflops`) or read
from a measured CSV. Both become a list of `Op`s with dependencies, so the SimPy execution
(`gemini_ft.sim.interleave_exec`) can replay them with checkpoint traffic competing for the NIC.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from gemini_ft.common.errors import UserError
from gemini_ft.scenarios.schema import GIB, Scenario

COMPUTE, COMM = "compute", "comm"


@dataclass(frozen=True)
class Op:
    """One training operation: `deps` are (op index, lag_s): it starts `lag_s` after each of them ends."""

    label: str
    kind: str  # COMPUTE (the GPU's SMs) or COMM (the NIC)
    duration_s: float
    deps: tuple[tuple[int, float], ...]
    planned_start_s: float  # start in the contention-free timeline


@dataclass(frozen=True)
class Span:
    """A stretch [start_s, end_s) of the contention-free timeline in which the NIC carries no training traffic.

    `anchor` is the comm op whose end opens the span (-1: the iteration start), so execution can place
    checkpoint chunks relative to the training traffic even when it drifts.
    """

    start_s: float
    end_s: float
    anchor: int

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Timeline:
    """The ops of one iteration (in a valid execution order) and the contention-free iteration time."""

    ops: tuple[Op, ...]
    iteration_time_s: float
    source: str  # "model" or the CSV path

    def idle_spans(self) -> list[Span]:
        """The NIC's idle spans, in time order; the last one runs to the iteration end (possibly empty)."""
        comm = sorted(
            (
                (op.planned_start_s, op.planned_start_s + op.duration_s, i)
                for i, op in enumerate(self.ops)
                if op.kind == COMM
            ),
        )
        spans: list[Span] = []
        cursor, anchor = 0.0, -1
        for start, end, index in comm:
            if start > cursor:
                spans.append(Span(cursor, start, anchor))
            if end >= cursor:
                cursor, anchor = end, index
        spans.append(Span(cursor, max(cursor, self.iteration_time_s), anchor))
        return spans


def nic_share_bytes_per_s(scenario: Scenario) -> float:
    """One GPU's share B of its machine's NIC: all GPUs of a machine send their shards at once."""
    return scenario.cluster.nic_bandwidth_gbps * 1e9 / 8 / scenario.cluster.gpus_per_machine


def layer_parameters(scenario: Scenario) -> tuple[float, float]:
    """(parameters per transformer layer, parameters outside the layers, e.g. embeddings).

    A layer holds 12·h² parameters (attention 4h², MLP 8h²); when the declared total is smaller than
    L·12h² (a rounded model name), the total is split evenly instead.
    """
    model = scenario.model
    assert model.layers is not None and model.hidden_size is not None
    per_layer = min(12.0 * model.hidden_size**2, model.parameters / model.layers)
    return per_layer, model.parameters - per_layer * model.layers


def model_timeline(scenario: Scenario) -> Timeline:
    """ZeRO-3 with a prefetch depth of one layer, from the architecture (needs layers and hidden_size)."""
    model, cluster = scenario.model, scenario.cluster
    if model.layers is None or model.hidden_size is None:
        raise UserError(
            "model.layers", model.layers, "the interleaving model needs model.layers and model.hidden_size"
        )
    layers = model.layers
    per_layer, outside = layer_parameters(scenario)
    sizes = [per_layer + (outside if i == 0 else 0.0) for i in range(layers)]
    tokens = model.micro_batch_size * model.sequence_length
    flops_per_s = cluster.gpu_tflops * 1e12
    bandwidth = nic_share_bytes_per_s(scenario)
    n = cluster.machines

    def collective_s(params: float) -> float:
        # Ring all-gather / reduce-scatter: every machine moves (N-1)/N of the layer over its NIC in
        # N-1 steps; each GPU moves its 1/g share over its 1/g share of the NIC.
        if n == 1:
            return 0.0
        data = params * model.comm_bytes_per_param / cluster.gpus_per_machine
        return (n - 1) * scenario.interleave.alpha_s + (n - 1) / n * data / bandwidth

    def compute_s(params: float, share: float) -> float:
        return share * 6.0 * params * tokens / flops_per_s

    builder = _Builder()
    ag_f = [-1] * layers
    fwd = [-1] * layers
    # Forward: gather layer l while layer l-1 computes; at most two gathered layers live at once.
    for layer in range(layers):
        deps = [builder.last_comm] + ([fwd[layer - 2]] if layer >= 2 else [])
        ag_f[layer] = builder.add(f"allgather-fwd-{layer}", COMM, collective_s(sizes[layer]), deps)
        if layer >= 1:
            fwd[layer - 1] = builder.add(
                f"forward-{layer - 1}",
                COMPUTE,
                compute_s(sizes[layer - 1], 1 / 3),
                [fwd[layer - 2] if layer >= 2 else -1, ag_f[layer - 1]],
            )
    fwd[layers - 1] = builder.add(
        f"forward-{layers - 1}",
        COMPUTE,
        compute_s(sizes[-1], 1 / 3),
        [fwd[layers - 2] if layers >= 2 else -1, ag_f[-1]],
    )
    # Backward, last layer first: gather layer k-1 while k computes, reduce-scatter k's gradients after.
    bwd = [-1] * layers
    ag_b = [-1] * layers
    top = layers - 1
    ag_b[top] = builder.add(
        f"allgather-bwd-{top}", COMM, collective_s(sizes[top]), [builder.last_comm, fwd[top]]
    )
    for k in range(top, -1, -1):
        if k >= 1:
            memory_dep = bwd[k + 1] if k + 1 <= top else fwd[top]
            ag_b[k - 1] = builder.add(
                f"allgather-bwd-{k - 1}", COMM, collective_s(sizes[k - 1]), [builder.last_comm, memory_dep]
            )
        previous = bwd[k + 1] if k + 1 <= top else fwd[top]
        bwd[k] = builder.add(f"backward-{k}", COMPUTE, compute_s(sizes[k], 2 / 3), [previous, ag_b[k]])
        builder.add(f"reducescatter-{k}", COMM, collective_s(sizes[k]), [builder.last_comm, bwd[k]])
    step_s = scenario.interleave.optimizer_step_s
    if step_s > 0:
        # Each GPU updates its shard once all its gradients are reduced; the NIC then idles until the
        # next iteration's first all-gather, which is why this is the iteration's largest idle span.
        builder.add("optimizer-step", COMPUTE, step_s, [builder.last_comm, bwd[0]])
    return builder.finish("model")


class _Builder:
    """Appends ops with zero-lag dependencies and computes their contention-free start times."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.ends: list[float] = []
        self.last_comm = -1
        self.last_compute = -1

    def add(self, label: str, kind: str, duration_s: float, deps: list[int]) -> int:
        # Ops on one stream run in order (NCCL and CUDA streams are in-order queues).
        same_stream = self.last_comm if kind == COMM else self.last_compute
        unique = tuple(sorted({d for d in [*deps, same_stream] if d >= 0}))
        start = max((self.ends[d] for d in unique), default=0.0)
        index = len(self.ops)
        self.ops.append(Op(label, kind, duration_s, tuple((d, 0.0) for d in unique), start))
        self.ends.append(start + duration_s)
        if kind == COMM:
            self.last_comm = index
        else:
            self.last_compute = index
        return index

    def finish(self, source: str) -> Timeline:
        return Timeline(tuple(self.ops), max(self.ends, default=0.0), source)


def read_timeline_csv(path: Path) -> Timeline:
    """A measured timeline: columns start_s, end_s, kind (compute|comm), optional label.

    Each op depends on the last op of each kind that ended before it started, with the measured gap as
    lag, so replaying it without contention reproduces the measurement exactly.
    """
    field = "interleave.timeline_file"
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise UserError(field, str(path), f"cannot be read: {exc.strerror}") from None
    if not rows:
        raise UserError(
            field, str(path), "empty timeline: needs rows with start_s, end_s, kind (compute|comm)"
        )
    missing = {"start_s", "end_s", "kind"} - set(rows[0])
    if missing:
        raise UserError(
            field, str(path), f"missing column(s) {', '.join(sorted(missing))}; needs start_s, end_s, kind"
        )
    records = []
    for line, row in enumerate(rows, start=2):
        try:
            start, end = float(row["start_s"]), float(row["end_s"])
        except ValueError:
            raise UserError(f"{path}:{line}", row, "start_s and end_s must be numbers") from None
        if row["kind"] not in (COMPUTE, COMM):
            raise UserError(f"{path}:{line} kind", row["kind"], "one of compute, comm")
        if not 0 <= start <= end:
            raise UserError(f"{path}:{line}", f"{start}..{end}", "needs 0 <= start_s <= end_s")
        records.append((start, end, row["kind"], row.get("label") or f"{row['kind']}-{line - 2}"))
    records.sort()
    ops: list[Op] = []
    for start, end, kind, label in records:
        deps = []
        for other in (COMPUTE, COMM):
            before = [
                i
                for i, op in enumerate(ops)
                if op.kind == other and op.planned_start_s + op.duration_s <= start
            ]
            if before:
                last = max(before, key=lambda i: (ops[i].planned_start_s + ops[i].duration_s, i))
                deps.append((last, start - (ops[last].planned_start_s + ops[last].duration_s)))
        ops.append(Op(label, kind, end - start, tuple(deps), start))
    return Timeline(tuple(ops), max(end for _, end, _, _ in records), str(path))


def build_timeline(scenario: Scenario) -> Timeline:
    if scenario.interleave.timeline_file is not None:
        return read_timeline_csv(scenario.interleave.timeline_file)
    return model_timeline(scenario)


def gpu_memory_left_bytes(scenario: Scenario) -> float | None:
    """GPU memory left for checkpoint buffers while training, or None without the architecture.

    Assumes ZeRO-3: the sharded model state (`state_bytes_per_param` per parameter / all GPUs), two
    gathered layers (current + prefetched) and one layer's unsharded gradients in `comm_bytes_per_param`,
    activations after Korthikanti et al. (2022) — with activation checkpointing the layer inputs
    2·s·b·h per layer plus one layer's working set s·b·h·(34 + 5·a·s/h) during recomputation, without
    it that working set for every layer — and `interleave.runtime_reserved_gib`.
    """
    model, cluster = scenario.model, scenario.cluster
    if model.layers is None or model.hidden_size is None:
        return None
    gpus = cluster.machines * cluster.gpus_per_machine
    per_layer, _ = layer_parameters(scenario)
    state = model.parameters * model.state_bytes_per_param / gpus
    working_params = 3 * per_layer * model.comm_bytes_per_param
    s, b, h = model.sequence_length, model.micro_batch_size, model.hidden_size
    heads = model.attention_heads or max(1, h // 128)
    layer_working = s * b * h * (34 + 5 * heads * s / h)
    if model.activation_checkpointing:
        activations = 2 * s * b * h * model.layers + layer_working
    else:
        activations = layer_working * model.layers
    reserved = scenario.interleave.runtime_reserved_gib * GIB
    return cluster.gpu_memory_gib * GIB - state - working_params - activations - reserved
