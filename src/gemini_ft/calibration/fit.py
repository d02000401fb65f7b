"""Fit the simulator's parameters from real runs: one `Parameter` per scenario field, with its 95% CI.

Transfer times follow f(s) = α + s/B: replication rounds → `checkpoint.transfer_latency_s` (once per
round) and `checkpoint.replication_gbps` (the effective rate while training shares the links; a
worker process's first round is left out); peer fetches during a recovery →
`checkpoint.fetch_latency_s` and `cluster.nic_bandwidth_gbps` (given the rounds' fixed cost when the
fetches have one size); snapshot copies into CPU memory → `interleave.gpu_to_cpu_gbps`, local restores
→ `checkpoint.local_retrieval_latency_s` (and `checkpoint.local_retrieval_gbps` when they have two
sizes: a restore is the first work of a new process, not a warm copy); persistent saves →
`storage.latency_s` and `storage.bandwidth_gbps` (from the disk baseline's reads when a run has them:
the test bed's persistent storage is its local disk, not the cluster's).
α and B are separated only when the sizes differ enough, otherwise α keeps the base scenario's value
and B is fitted given it. The interleaving model's per-chunk α (`interleave.alpha_s`) is kept: the
number of chunks in a round moves with its size, so a per-chunk cost cannot be told apart from the
round's fixed cost and bandwidth. Detection follows the rendezvous: a worker start S (fitted) for a
software failure, plus the wait for the dead machine's keep-alives to expire or its replacement to join
for a hardware one (fitted; keep-alive × 1.5 on average when no hardware failure was recorded); warm-up
is the mean restart. Shape,
checkpoint size and step time come from the first run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gemini_ft.calibration.measurements import (
    Run,
    detections,
    disk_loads,
    keep_alive_wait_s,
    persistent_saves,
    recoveries,
    recovery_events,
    replication_rounds,
    training_steps,
)
from gemini_ft.calibration.stats import Estimate, fit_affine, fit_mean, fit_through, rate_from_slope
from gemini_ft.common.errors import UserError
from gemini_ft.scenarios.schema import Scenario

GBPS = 1e9 / 8  # bytes per second in one Gbit/s
# α and B are told apart only when the largest transfer is at least this many times the smallest:
# shards of one run differ by a few bytes, which would make the intercept pure noise.
MIN_SIZE_RATIO = 1.5


@dataclass(frozen=True)
class Parameter:
    """One scenario field set by calibration: the value written, its estimate, and how it was found."""

    path: str
    value: float | int | str | None
    estimate: Estimate | None
    unit: str
    how: str
    fitted: bool = True
    """False when the data could not determine it and the base scenario's value is kept."""


@dataclass(frozen=True)
class Calibration:
    """Every parameter found from `runs` (the first run gives the shape, size and step time)."""

    parameters: list[Parameter]
    runs: list[str]

    def values(self) -> dict[str, float | int | str | None]:
        return {p.path: p.value for p in self.parameters}

    def table(self) -> pd.DataFrame:
        rows = []
        for p in self.parameters:
            e = p.estimate
            rows.append(
                {
                    "parameter": p.path,
                    "value": p.value,
                    "ci_low": e.low if e else math.nan,
                    "ci_high": e.high if e else math.nan,
                    "n": e.n if e else 0,
                    "unit": p.unit,
                    "how": p.how,
                }
            )
        return pd.DataFrame(rows)


def calibrate(runs: list[Run], base: Scenario) -> Calibration:
    """All fits over `runs` (pooled), with `base` supplying what the data cannot determine."""
    if not runs:
        raise UserError("MEASUREMENTS", [], "at least one measurements file is required")
    reference = runs[0]
    if reference.of("snapshot").empty:
        raise UserError("MEASUREMENTS", str(reference.path), "no snapshot events: cannot size the checkpoint")
    params: list[Parameter] = []
    params += _shape(reference, base)
    procs = reference.config.procs_per_machine
    replication = _replication(runs, base, procs)
    params += replication
    params += _peer_fetches(runs, base, procs, float(replication[0].value))
    params.append(_chunk_cost(runs, base))
    params += _local_copies(runs, base)
    params += _persistent(runs, base)
    params += _recovery(runs, base)
    return Calibration(params, [str(r.path) for r in runs])


# ---- shape, size and step time of the reference run ---------------------------------------------
def _shape(run: Run, base: Scenario) -> list[Parameter]:
    cfg = run.config
    label = f"config of {run.label}"
    shard = run.shard_bytes()
    if len(shard) != cfg.world_size:
        raise UserError(
            "MEASUREMENTS", str(run.path), f"snapshots from {len(shard)} of {cfg.world_size} ranks"
        )
    per_param = base.model.ckpt_bytes_per_param
    steps = training_steps(run)
    if steps.empty:
        raise UserError("MEASUREMENTS", str(run.path), "no step events: cannot time an iteration")
    step = fit_mean(steps["duration_s"].to_numpy())
    return [
        Parameter("model.name", f"realrun-{cfg.model_size}", None, "", label),
        Parameter("cluster.machines", cfg.machines, None, "", label),
        Parameter("cluster.gpus_per_machine", cfg.procs_per_machine, None, "", f"{label}: procs_per_machine"),
        Parameter("checkpoint.replicas", cfg.replicas, None, "", label),
        Parameter("checkpoint.placement", cfg.placement, None, "", label),
        Parameter(
            "model.parameters",
            run.ckpt_bytes_total() / per_param,
            Estimate(run.ckpt_bytes_total() / per_param, math.nan, math.nan, len(shard)),
            "",
            f"sum of shard bytes / ckpt_bytes_per_param ({per_param:g}, kept)",
        ),
        Parameter("model.iteration_time_s", step.value, step, "s", "mean step (no persist step)"),
    ]


# ---- transfers ----------------------------------------------------------------------------------
def _distinct_sizes(x: np.ndarray) -> bool:
    return len(x) >= 3 and float(x.min()) > 0 and float(x.max()) >= MIN_SIZE_RATIO * float(x.min())


def _alpha_and_rate(
    x: np.ndarray, y: np.ndarray, base_alpha: float, scale: float
) -> tuple[Estimate | None, Estimate, str]:
    """(α or None when kept, bandwidth = scale/slope, how) of y = α + x/B."""
    if _distinct_sizes(x):
        fit = fit_affine(x, y)
        return fit.intercept, rate_from_slope(fit.slope, scale), "least squares α + bytes/B"
    slope = fit_through(x, y, intercept=base_alpha)
    how = f"one size: bytes/B given the kept intercept {base_alpha:g} s"
    return None, rate_from_slope(slope, scale), how


def _replication(runs: list[Run], base: Scenario, procs: int) -> list[Parameter]:
    # A checkpoint is complete when the slowest rank's round is (what validation measures), so each step's
    # slowest round is one sample: fitting every rank's round would predict the average rank instead.
    rounds = pd.concat([_slowest_rounds(r) for r in runs], ignore_index=True)
    # Each rank sends its shard to m − 1 peers concurrently in one round, so the round's intercept is one
    # fixed cost per round, not per peer (the simulator charges it so). The procs_per_machine ranks of a
    # machine run their rounds at the same time over the machine's NIC: it carries procs × a rank's rate.
    # Rounds run while training shares the links and CPUs, and exchange both ways: their rate is the
    # replication bandwidth, not the NIC's (peer fetches measure that, in `_peer_fetches`).
    return _intercept_and_rate(
        rounds, "bytes_sent", ("checkpoint.transfer_latency_s", base.checkpoint.transfer_latency_s),
        ("checkpoint.replication_gbps", base.checkpoint.replication_gbps), procs / GBPS,
        what="slowest replicate round per step (all peers at once)", rate_note=f"; machine = {procs} ranks × rank rate",
        none="no replicate events",
    )  # fmt: skip


def _slowest_rounds(run: Run) -> pd.DataFrame:
    """One row per step: the slowest rank's replication round and the bytes one rank sent in it."""
    rounds = replication_rounds(run)
    if rounds.empty:
        return rounds
    return rounds.groupby("step").agg(bytes_sent=("bytes_sent", "max"), duration_s=("duration_s", "max"))


def _peer_fetches(runs: list[Run], base: Scenario, procs: int, latency_s: float) -> list[Parameter]:
    """`checkpoint.fetch_latency_s` and `cluster.nic_bandwidth_gbps` from retrievals from a peer.

    A fetch runs during a recovery, with no training on the host, so its fixed cost is its own: with
    fetches of distinct sizes (a tiny and a 5m run) α and B are fitted by least squares; with one size
    the rounds' fixed cost (`latency_s`) stands in for α and B is fitted given it.
    The ranks of a replaced machine fetch at the same time, so the NIC carries procs × a rank's rate.
    """
    path, kept = "cluster.nic_bandwidth_gbps", base.cluster.nic_bandwidth_gbps
    fetches = pd.concat([_fetches(r) for r in runs], ignore_index=True)
    if fetches.empty:
        how = "kept: no peer fetches (retrieve events from a peer) in the fitting data"
        return [
            Parameter("checkpoint.fetch_latency_s", base.checkpoint.fetch_latency_s, None, "s", how, False),
            Parameter(path, kept, None, "Gbps", how, fitted=False),
        ]
    x, y = fetches["bytes"].to_numpy(float), fetches["duration_s"].to_numpy(float)
    if len(np.unique(x)) >= 2 and float(x.max()) >= MIN_SIZE_RATIO * float(x.min()) > 0:
        fit = fit_affine(x, y)
        rate = rate_from_slope(fit.slope, procs / GBPS)
        alpha = fit.intercept
        how = (
            f"peer fetches, least squares α + bytes/B over {len(x)} fetches; NIC = {procs} ranks × rank rate"
        )
        if _usable(rate) and alpha.value >= 0:
            return [
                Parameter("checkpoint.fetch_latency_s", alpha.value, alpha, "s", f"intercept of {how}"),
                _rate_parameter(path, rate, kept, how),
            ]
    rate = rate_from_slope(fit_through(x, y, intercept=latency_s), procs / GBPS)
    how = (
        f"peer fetches of one size, bytes/B given checkpoint.transfer_latency_s = {latency_s:.3g} s;"
        f" NIC = {procs} ranks × rank rate"
    )
    return [
        Parameter(
            "checkpoint.fetch_latency_s", None, None, "s", "None: the rounds' fixed cost (one size)", False
        ),
        _rate_parameter(path, rate, kept, how),
    ]


def _fetches(run: Run) -> pd.DataFrame:
    rows = run.of("retrieve")
    return rows[(rows["source"] == "peer") & rows["ok"]]


def _chunk_cost(runs: list[Run], base: Scenario) -> Parameter:
    """`interleave.alpha_s` is kept, and the output says why.

    A round of s bytes sends ⌈s / chunk⌉ chunks, so a per-chunk cost c adds c to the round's intercept
    (one chunk) or c / chunk to its slope (many): with one chunk size it is inseparable from the fitted
    latency and bandwidth. A per-round intercept divided by the chunk count would be a different
    quantity, and the interleaving model would charge it once per chunk.
    """
    chunks: set[int] = set()
    for run in runs:
        rounds = replication_rounds(run)
        chunk_bytes = run.config.chunk_mib * 2**20
        chunks |= {math.ceil(b / chunk_bytes) for b in rounds["shard_bytes"].to_numpy(float)}
    if not chunks:
        how = "kept: no replicate events"
    else:
        seen = str(min(chunks)) if len(chunks) == 1 else f"{min(chunks)}-{max(chunks)}"
        how = f"kept: rounds of {seen} chunk(s); a per-chunk cost is not separable from the round's α and B"
    return Parameter("interleave.alpha_s", base.interleave.alpha_s, None, "s", how, fitted=False)


def _intercept_and_rate(
    frame: pd.DataFrame,
    x_column: str,
    intercept: tuple[str, float],
    rate: tuple[str, float | None],
    scale: float,
    *,
    what: str,
    rate_note: str,
    none: str,
) -> list[Parameter]:
    """Parameters of duration = intercept + bytes / rate fitted to `frame`; base values are kept
    (and marked so) where the data cannot determine them."""
    (intercept_path, base_intercept), (rate_path, base_rate) = intercept, rate
    if frame.empty:
        return [
            Parameter(intercept_path, base_intercept, None, "s", f"kept: {none}", fitted=False),
            Parameter(rate_path, base_rate, None, "Gbps", f"kept: {none}", fitted=False),
        ]
    x, y = frame[x_column].to_numpy(float), frame["duration_s"].to_numpy(float)
    alpha, fitted_rate, how = _alpha_and_rate(x, y, base_intercept, scale)
    # An intercept without a bandwidth beside it describes nothing.
    if alpha is None or not _usable(fitted_rate):
        first = Parameter(
            intercept_path, base_intercept, None, "s", "kept: one size or no bandwidth fit", False
        )
    else:
        first = Parameter(intercept_path, max(alpha.value, 0.0), alpha, "s", f"intercept of {what}, {how}")
    return [first, _rate_parameter(rate_path, fitted_rate, base_rate, f"{what}, {how}{rate_note}")]


def _usable(rate: Estimate) -> bool:
    return math.isfinite(rate.value) and rate.value > 0


def _rate_parameter(path: str, rate: Estimate, kept: float | None, how: str) -> Parameter:
    if not _usable(rate):
        return Parameter(path, kept, rate, "Gbps", f"kept: non-positive slope ({how})", fitted=False)
    return Parameter(path, rate.value, rate, "Gbps", how)


def _local_copies(runs: list[Run], base: Scenario) -> list[Parameter]:
    """`interleave.gpu_to_cpu_gbps` from snapshot copies; a local restore's fixed cost (and, with two
    sizes, its own bandwidth) from the local restores themselves.

    The simulator charges a restore from local memory as latency + bytes / local_retrieval_gbps (None =
    gpu_to_cpu_gbps). Snapshots are the same copy in the other direction, logged every step, so they fit
    the snapshot bandwidth; but they run in a warm process, while a restore is the first work of a
    freshly started one (page faults on the mapped slot and the new tensors, first calls into torch): on
    the quiet 2-core host a 0.8 MB restore took 2.3-4.1 ms where a snapshot's fitted fixed cost is under
    0.5 ms. So restores get their own fit: with restores of two sizes (MIN_SIZE_RATIO apart) their
    latency and bandwidth by least squares, as rounds and fetches get theirs; with one size, their
    latency is the mean of the restores less their bytes at the snapshots' bandwidth. Without local
    recoveries the snapshots' intercept stands in.
    """
    snaps = pd.concat([r.of("snapshot") for r in runs], ignore_index=True)
    copies = _intercept_and_rate(
        snaps, "bytes", ("checkpoint.local_retrieval_latency_s", base.checkpoint.local_retrieval_latency_s),
        ("interleave.gpu_to_cpu_gbps", base.interleave.gpu_to_cpu_gbps), 1 / GBPS,
        what="snapshot copies", rate_note="", none="no snapshot events",
    )  # fmt: skip
    latency, rate = copies

    def kept_rate(why: str) -> Parameter:
        value = base.checkpoint.local_retrieval_gbps
        how = f"kept: {why} (None: a restore copies at interleave.gpu_to_cpu_gbps)"
        return Parameter("checkpoint.local_retrieval_gbps", value, None, "Gbps", how, fitted=False)

    found = [frame for frame in (_local_restores(r) for r in runs) if not frame.empty]
    restores = pd.concat(found, ignore_index=True) if found else pd.DataFrame()
    if restores.empty or not rate.fitted:
        return [*copies, kept_rate("no local restores" if restores.empty else "no snapshot bandwidth")]
    x, y = restores["bytes"].to_numpy(float), restores["retrieve_s"].to_numpy(float)
    if _distinct_sizes(x):
        fit = fit_affine(x, y)
        own = rate_from_slope(fit.slope, 1 / GBPS)
        if _usable(own) and fit.intercept.value >= 0:
            how = (
                f"job-level local retrievals (slowest rank), least squares α + bytes/B over {len(x)} restores"
            )
            return [
                Parameter(latency.path, fit.intercept.value, fit.intercept, "s", f"intercept of {how}"),
                rate,
                Parameter("checkpoint.local_retrieval_gbps", own.value, own, "Gbps", how),
            ]
    fixed = fit_mean(y - x / (float(rate.value) * GBPS))
    how = (
        f"mean of {fixed.n} job-level local retrievals less bytes / interleave.gpu_to_cpu_gbps"
        " (a restore starts a cold process; snapshot copies' intercept"
        f" {latency.value:.3g} s is a warm one's)"
    )
    return [
        Parameter(latency.path, max(fixed.value, 0.0), fixed, "s", how),
        rate,
        kept_rate("restores of one size, or no usable fit of two"),
    ]


def _local_restores(run: Run) -> pd.DataFrame:
    """Job-level recoveries from local memory (as validation measures them): retrieval time and bytes."""
    events = recovery_events(run)
    return events[events["source"] == "local"][["retrieve_s", "bytes"]]


def _persistent(runs: list[Run], base: Scenario) -> list[Parameter]:
    """`storage.*` from the persistent reads the runs measured, else from their persistent saves.

    The simulator charges `storage.latency_s + bytes / storage.bandwidth_gbps` for a persistent
    recovery's read (and an upload). The test bed's storage is its local disk, read by every rank at
    once: the disk baseline's loads measure exactly that read, so they set storage.* when present. The
    saves during training (DCP with fsync, competing with training for the 2 cores) are a different
    quantity and are used only without loads. Keeping the cluster's storage (e.g. 20 Gbps FSx) would
    predict a local disk read from a remote file system's bandwidth.
    """
    loads = pd.concat([disk_loads(r) for r in runs], ignore_index=True)
    if not loads.empty:
        frame, what = loads, "disk baseline loads (every rank reads at once; job bytes)"
    else:
        frame = pd.concat([persistent_saves(r) for r in runs], ignore_index=True)
        what = "persist, all ranks"
    return _intercept_and_rate(
        frame, "total_bytes", ("storage.latency_s", base.storage.latency_s),
        ("storage.bandwidth_gbps", base.storage.bandwidth_gbps), 1 / GBPS,
        what=what, rate_note="", none="no disk_load or complete persist events",
    )  # fmt: skip


# ---- recovery constants -------------------------------------------------------------------------
def _recovery(runs: list[Run], base: Scenario) -> list[Parameter]:
    """Detection from the rendezvous, warm-up from the restarts.

    A software failure is seen by torchrun's monitor (every 0.1 s), which restarts the workers at once:
    its detection is the workers' start S (process and library start on the host), fitted from the
    software failures. A hardware failure's next rendezvous round also waits until the dead machine is
    dropped — when its last keep-alive is older than keep_alive_s × 2 — and until the replacement
    agent has started and joined: hardware detection = S + A, A (the later of the two) fitted from the
    hardware failures (their slowest detect − S). The dead machine sent its last keep-alive on average
    half an interval before it died, so the keep-alive part of A averages keep_alive_s × 1.5, not × 2:
    on the recorded runs (tests/calibration/real_runs) A was 1.2-1.7 s per run with 1 s keep-alives,
    where the full 2 s of S + max(keep-alives, agent start) over-predicted every hardware recovery.
    Each is a mean with a 95% interval; a kind of failure absent from the data keeps the base value
    (software) or S + keep_alive_s × 1.5 (hardware).
    """
    found = pd.concat([detections(r) for r in runs], ignore_index=True)
    wait_s = keep_alive_wait_s(runs[0])
    software = found[found["kind"] == "software"]["detect_s"].to_numpy(float)
    hardware = found[found["kind"] == "hardware"]["detect_s"].to_numpy(float)
    out = []
    if len(software):
        start = fit_mean(software)
        out.append(
            Parameter("recovery.detection_s", start.value, start, "s",
                      f"software failures: mean slowest detect (monitor + worker start S), {len(software)}")
        )  # fmt: skip
    else:
        start = Estimate(base.recovery.detection_s, math.nan, math.nan, 0)
        out.append(
            Parameter("recovery.detection_s", start.value, None, "s", "kept: no software failures", False)
        )
    if len(hardware):
        agent = fit_mean(hardware - start.value)
        hw = Estimate(start.value + agent.value, start.value + agent.low, start.value + agent.high, agent.n)
        how = (
            f"S + A = {agent.value:.3g} s [{agent.low:.3g}, {agent.high:.3g}] from {len(hardware)} hardware"
            f" failures (the dead machine's keep-alives expire or its replacement joins, whichever is later)"
        )
        out.append(Parameter("recovery.hardware_detection_s", hw.value, hw, "s", how))
    else:
        keep_alive = f"keep_alive_s {runs[0].config.keep_alive_s:g} s x 1.5 = {wait_s:g} s on average"
        out.append(
            Parameter("recovery.hardware_detection_s", start.value + wait_s, None, "s",
                      f"S + {keep_alive} (no hardware failure: the new agent's start is unknown)", False)
        )  # fmt: skip
    restarts = recoveries_restarts(runs)
    if restarts.empty:
        restarts = pd.concat([r.of("restart") for r in runs], ignore_index=True)["duration_s"]
        how = "mean restart (first starts: no recoveries)"
    else:
        how = "mean restart of recoveries (start → ready)"
    if restarts.empty:
        out.append(
            Parameter("recovery.warmup_s", base.recovery.warmup_s, None, "s", "kept: no restarts", False)
        )
    else:
        warm = fit_mean(restarts.to_numpy(float))
        out.append(Parameter("recovery.warmup_s", warm.value, warm, "s", how))
    out.append(
        Parameter(
            "recovery.serialization_s", 0.0, None, "s", "set: shared-memory replicas need no serialization"
        )
    )
    return out


def recoveries_restarts(runs: list[Run]) -> pd.Series:
    """Every rank's restart (process start → ready) in a recovery."""
    return pd.concat([recoveries(r) for r in runs], ignore_index=True)["restart_s"]
