"""Failure arrivals for the whole cluster, generated once per run before the simulation starts.

`exponential`: one superposed Poisson process for all N machines, built so that runs with the
same seed and a higher rate see a superset of the failures of a lower rate (points of a unit
Poisson process in the (time, rate) plane, taken in order of their rate coordinate).
`weibull`, `lognormal`: a renewal process per machine kept in a heap of next-failure times; a failure
renews the clocks of the machines it took down (a whole domain for a correlated one), no others.
`trace`: a CSV (time_s, machine, type) replayed as is; rows with the same time are one event.
Each event is software or hardware; a share of events takes down a machine's whole failure domain.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from gemini_ft.common.errors import UserError
from gemini_ft.scenarios.schema import Scenario

if TYPE_CHECKING:
    import pandas as pd

DAY_S = 86400.0
FAILURE_TYPES = ("software", "hardware")


class FailureEvent(NamedTuple):
    """Machines that fail together at `time_s`; `hardware` failures lose the machine and its memory.

    A named tuple rather than a frozen dataclass: the engine builds one per failure that strikes, and a
    tuple is built several times faster (a frozen dataclass sets each field through `object.__setattr__`)."""

    time_s: float
    machines: tuple[int, ...]
    hardware: bool
    misdiagnosed: bool = False
    """A healthy machine was blamed and swapped out; the faulty one stayed (operations model)."""
    repeat: bool = False
    """A faulty machine left in the job failed again (operations model)."""

    @property
    def kind(self) -> str:
        return "hardware" if self.hardware else "software"


class FailureArrivals:
    """Every failure of one run in time order, as columns: the engine looks ahead through them (and the
    operations model thins them) without an object per draw, and builds an event only when it strikes."""

    def __init__(self, times: list[float], machines: list[int], build: Callable[[int], FailureEvent]) -> None:
        self.times = times
        self.machines = machines
        """The machine each failure starts at (a correlated failure takes its whole domain down)."""
        self.event: Callable[[int], FailureEvent] = build
        """The i-th failure as a `FailureEvent`."""

    @classmethod
    def of(cls, events: list[FailureEvent]) -> FailureArrivals:
        return cls([e.time_s for e in events], [e.machines[0] for e in events], events.__getitem__)

    def __len__(self) -> int:
        return len(self.times)


def generate_failures(
    scenario: Scenario, rng: np.random.Generator, duration_s: float, rate_scale: float = 1.0
) -> list[FailureEvent]:
    """All failure events in [0, duration_s), sorted by time; `rate_scale` multiplies every machine's
    rate (the operations model draws at the bad machines' rate and thins per machine)."""
    arrivals = failure_arrivals(scenario, rng, duration_s, rate_scale)
    return [arrivals.event(i) for i in range(len(arrivals))]


def failure_arrivals(
    scenario: Scenario, rng: np.random.Generator, duration_s: float, rate_scale: float = 1.0
) -> FailureArrivals:
    """`generate_failures` as columns (the same draws from `rng`)."""
    law = scenario.failures.distribution
    if law == "trace":
        return FailureArrivals.of(
            read_trace(scenario.failures.trace_file, scenario.cluster.machines, duration_s)
        )
    if law == "exponential":
        times, machines, u_type, u_domain = _superposed_poisson(scenario, rng, duration_s, rate_scale)
        return _columns(scenario, times, machines, u_type, u_domain)
    return FailureArrivals.of(_renewals(scenario, rng, duration_s, rate_scale))


def _superposed_poisson(
    scenario: Scenario, rng: np.random.Generator, duration_s: float, rate_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # Points of a unit-intensity Poisson process on [0, duration) × [0, ∞), drawn in increasing order of
    # the second coordinate y; a job failure rate Λ keeps the points with y < Λ. The draws for a point
    # do not depend on Λ, so a higher rate keeps a superset of the points (coupled streams).
    rate_per_s = scenario.failures.rate_per_machine_per_day * scenario.cluster.machines / DAY_S
    if rate_scale != 1.0:
        rate_per_s *= rate_scale
    n_machines = scenario.cluster.machines
    chunks: list[np.ndarray] = []
    y_end, block = 0.0, 256
    while True:
        draws = rng.random((block, 5))
        y = y_end + np.cumsum(-np.log1p(-draws[:, 0])) / duration_s
        chunks.append(np.column_stack([y, draws[:, 1:]]))
        y_end = float(y[-1])
        if y_end >= rate_per_s:
            break
        block = min(block * 2, 1 << 20)
    points = np.concatenate(chunks)
    points = points[points[:, 0] < rate_per_s]
    order = np.argsort(points[:, 1], kind="stable")
    points = points[order]
    times = points[:, 1] * duration_s
    machines = np.minimum((points[:, 2] * n_machines).astype(np.int64), n_machines - 1)
    return times, machines, points[:, 3], points[:, 4]


def lognormal_mu(mean_s: float, sigma: float) -> float:
    """μ of a lognormal law with mean `mean_s` and shape σ: mean = e^(μ + σ²/2)."""
    return math.log(mean_s) - sigma**2 / 2.0


def _renewals(
    scenario: Scenario, rng: np.random.Generator, duration_s: float, rate_scale: float = 1.0
) -> list[FailureEvent]:
    fails = scenario.failures
    rate = fails.rate_per_machine_per_day * rate_scale / DAY_S
    n = scenario.cluster.machines
    if rate == 0:
        return []
    mean_s = 1.0 / rate
    if fails.distribution == "weibull":
        scale = mean_s / math.gamma(1.0 + 1.0 / fails.weibull_shape)  # mean time between failures = 1 / rate

        def draw(size: int | None = None):
            return scale * rng.weibull(fails.weibull_shape, size=size)
    else:
        mu = lognormal_mu(mean_s, fails.lognormal_sigma)

        def draw(size: int | None = None):
            return rng.lognormal(mu, fails.lognormal_sigma, size=size)

    domain = scenario.cluster.failure_domain_size
    heap = [(float(t), i) for i, t in enumerate(draw(n)) if t < duration_s]
    heapq.heapify(heap)
    due = {i: t for t, i in heap}  # each machine's current next failure; older heap entries are stale
    events = []
    while heap:
        t, machine = heapq.heappop(heap)
        if due.get(machine) != t:
            continue
        u_type, u_domain = rng.random(2)
        if u_domain < fails.correlated_fraction:
            start = machine // domain * domain
            group = tuple(range(start, min(start + domain, n)))
        else:
            group = (machine,)
        events.append(FailureEvent(t, group, bool(u_type < fails.hardware_fraction)))
        for failed in group:  # the replaced or restarted machines start afresh; the others keep their age
            following = t + float(draw())
            if following < duration_s:
                due[failed] = following
                heapq.heappush(heap, (following, failed))
            else:
                due.pop(failed, None)
    return events


def _columns(
    scenario: Scenario, times: np.ndarray, machines: np.ndarray, u_type: np.ndarray, u_domain: np.ndarray
) -> FailureArrivals:
    fails = scenario.failures
    domain = scenario.cluster.failure_domain_size
    n = scenario.cluster.machines
    time_list, machine_list = times.tolist(), machines.tolist()
    hardware = (u_type < fails.hardware_fraction).tolist()
    domain_wide = (u_domain < fails.correlated_fraction).tolist()

    def build(i: int) -> FailureEvent:
        machine = machine_list[i]
        if domain_wide[i]:
            start = machine // domain * domain
            group = tuple(range(start, min(start + domain, n)))
        else:
            group = (machine,)
        return FailureEvent(time_list[i], group, hardware[i])

    return FailureArrivals(time_list, machine_list, build)


def read_trace(path: Path | None, machines: int, duration_s: float) -> list[FailureEvent]:
    """A failure trace CSV with columns time_s, machine, type; rows at the same time form one event
    (hardware if any of its rows is)."""
    if path is None:
        raise UserError("failures.trace_file", None, "required when failures.distribution = 'trace'")
    import pandas as pd  # only traces need it; a run without one starts without pandas

    try:  # read as text: a column of `True` must not pass for times 1.0 (pandas reads it as booleans)
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError("failures.trace_file", str(path), f"cannot be read as CSV: {exc}") from None
    missing = {"time_s", "machine", "type"} - set(table.columns)
    if missing:
        raise UserError("failures.trace_file", str(path), f"missing column(s) {', '.join(sorted(missing))}")
    times = pd.to_numeric(table["time_s"], errors="coerce")
    ids = pd.to_numeric(table["machine"], errors="coerce")
    kinds = table["type"].astype(str).str.strip().str.lower()
    _check_trace_column("time_s", times, times.isna() | (times < 0), "a number ≥ 0")
    bad_ids = ids.isna() | (ids < 0) | (ids >= machines) | (ids != ids.round())
    _check_trace_column("machine", table["machine"], bad_ids, f"an integer in [0, {machines - 1}]")
    _check_trace_column("type", kinds, ~kinds.isin(FAILURE_TYPES), "software or hardware")
    frame = pd.DataFrame({"t": times, "m": ids.astype(np.int64), "hw": kinds == "hardware"})
    frame = frame[frame["t"] < duration_s].sort_values(["t", "m"], kind="stable")
    events = []
    for t, rows in frame.groupby("t", sort=True):
        events.append(FailureEvent(float(t), tuple(sorted(set(rows["m"].tolist()))), bool(rows["hw"].any())))
    return events


def _check_trace_column(name: str, values: pd.Series, bad: pd.Series, allowed: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(
            f"failures.trace_file row {row + 2} column {name}",
            _as_read(values.iloc[row]),
            f"must be {allowed}",
        )


def _as_read(text: str) -> object:
    """A cell as the user wrote it: a number shows as a number (99, 2.5), anything else as text."""
    try:
        number = float(text)
    except (TypeError, ValueError):
        return text
    return int(number) if number.is_integer() and "." not in str(text) else number
