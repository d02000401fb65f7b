"""Cluster operations: which physical machine serves each job slot, and where failed machines go.

Off by default (`scenario.operations.enabled`). The job has N slots served by hosts; a hardware
failure sends its host through a repair pipeline (automatic, then manual if that did not fix it, each
with a duration law; a repair can silently fail) back into a finite spare pool of
`cluster.standby_machines`, from which the job takes the spare with the fewest past failures and waits
when the pool is empty. Bad hosts fail `bad_rate_multiplier` times as often: failures are drawn at
the bad rate and thinned by the multiplier of the host that serves the slot at that moment (exact
for exponential laws, an approximation for renewal laws). A diagnosis can blame a healthy machine;
a faulty host left in the job fails again soon after each restart. Hosts are retired after k
failures in a window and replaced by new ones after `new_machine_days`.

Nothing here schedules SimPy events: repairs are resolved lazily when the job asks for a spare.
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np

from gemini_ft.scenarios.schema import OperationsConfig, Scenario
from gemini_ft.sim.failures import DAY_S, FailureEvent, lognormal_mu


class Operations:
    """Hosts, the spare pool and the repair pipeline of one run; the engine calls it at failures."""

    def __init__(self, scenario: Scenario, rng: np.random.Generator) -> None:
        self.config: OperationsConfig = scenario.operations
        self.rng = rng
        self.thinning = scenario.failures.distribution != "trace"  # a trace is replayed as it is
        n, spares = scenario.cluster.machines, scenario.cluster.standby_machines
        self.slot_host = list(range(n))
        self.pool: list[int] = list(range(n, n + spares))  # idle spares, longest idle first
        self.returning: list[tuple[float, int]] = []  # heap of (back in the pool at, host)
        hosts = n + spares
        self.bad: list[bool] = (rng.random(hosts) < self.config.bad_machine_fraction).tolist()
        self.faulty: list[bool] = [False] * hosts  # still broken although in service or in the pool
        self.failures: list[int] = [0] * hosts
        self.recent: list[deque[float]] = [deque() for _ in range(hosts)]
        self._faulty_slots: set[int] = set()  # slots served by a faulty host
        self._replacements: dict[
            int, tuple[float, float] | None
        ] = {}  # decided at the failure, read by the job
        self.retired = 0
        self.misdiagnoses = 0

    # ---- failure arrivals ---------------------------------------------------------------------
    @property
    def rate_scale(self) -> float:
        """Failures are drawn at the worst host's rate and thinned per host by `admit`."""
        cfg = self.config
        return cfg.bad_rate_multiplier if cfg.bad_machine_fraction > 0 else 1.0

    @property
    def thins(self) -> bool:
        """Whether failures are drawn at a higher rate than a good host's and thinned (`keeps`)."""
        return self.thinning and self.rate_scale != 1.0

    def next_kept(self, slots: list[int], kept_anyway: list[bool], start: int) -> int:
        """Thinning: the index of the first failure from `start` on that is kept (len(slots) if none). A
        failure drawn at the bad rate is kept for a bad host, and for a good one with probability
        1/multiplier: `kept_anyway[i]` is that coin, tossed for every drawn failure at once (`thinning_coins`).

        Decided with the hosts in place when the previous failure was handled, so that thinned draws cost
        no SimPy event; a repeat failure that swaps that very slot's host in between is not seen (rare)."""
        bad, hosts = self.bad, self.slot_host
        for i in range(start, len(slots)):
            if kept_anyway[i] or bad[hosts[slots[i]]]:
                return i
        return len(slots)

    def thinning_coins(self, count: int, rng: np.random.Generator) -> list[bool]:
        """For each of `count` drawn failures, whether a good host keeps it (probability 1/multiplier)."""
        return (rng.random(count) * self.rate_scale < 1.0).tolist()

    def admit(self, event: FailureEvent, now: float) -> FailureEvent:
        """The failure as the job sees it (diagnosis, retirement); hosts are swapped at once."""
        return self._diagnose(event, now, repeat=False)

    def repeat_failure(self, slot: int, now: float) -> FailureEvent:
        """A faulty host left in the job fails again after a restart (always a hardware failure)."""
        return self._diagnose(FailureEvent(now, (slot,), True), now, repeat=True)

    def faulty_slot(self) -> int | None:
        """The first job slot served by a faulty host, if any."""
        return min(self._faulty_slots) if self._faulty_slots else None

    def is_faulty(self, slot: int) -> bool:
        return slot in self._faulty_slots

    # ---- replacements -------------------------------------------------------------------------
    def replace(self, slot: int, now: float) -> tuple[float, float] | None:
        """(spare found at, ready at) of the spare that took over a slot lost to a hardware failure, or
        None when the slot kept its host (a wrong diagnosis blamed another machine)."""
        return self._replacements.pop(slot, None)

    def _swap(self, slot: int, now: float, retire: bool) -> None:
        host = self.slot_host[slot]
        if retire:
            self.retired += 1
            heapq.heappush(self.returning, (now + self.config.new_machine_days * DAY_S, self._new_host()))
        else:
            heapq.heappush(self.returning, (now + self._repair_s(host), host))
        spare_at, spare = self._take_spare(now)
        self.slot_host[slot] = spare
        if self.faulty[spare]:
            self._faulty_slots.add(slot)
        else:
            self._faulty_slots.discard(slot)
        self._replacements[slot] = (spare_at, spare_at + self.config.swap_in_s)

    # ---- helpers ------------------------------------------------------------------------------
    def _new_host(self) -> int:
        self.bad.append(bool(self.rng.random() < self.config.bad_machine_fraction))
        self.faulty.append(False)
        self.failures.append(0)
        self.recent.append(deque())
        return len(self.bad) - 1

    def _diagnose(self, event: FailureEvent, now: float, repeat: bool) -> FailureEvent:
        cfg = self.config
        hardware = event.hardware
        retiring = {slot for slot in event.machines if self._count_failure(self.slot_host[slot], now)}
        hardware |= bool(retiring)  # a retired machine leaves the job with its memory
        machines = event.machines
        staying = None
        wrong = hardware and cfg.misdiagnosis_fraction > 0 and len(self.slot_host) > len(machines)
        if wrong and self.rng.random() < cfg.misdiagnosis_fraction:
            # The blame falls on a healthy machine: it is swapped out, the faulty one stays.
            culprit = machines[0]
            blamed = int(self.rng.integers(len(self.slot_host) - 1))
            blamed += blamed >= culprit
            if blamed not in machines:
                staying = culprit
                self.misdiagnoses += 1
                self.faulty[self.slot_host[culprit]] = True
                self._faulty_slots.add(culprit)
                machines = tuple(sorted((*machines, blamed)))
        if hardware:
            for slot in machines:
                if slot != staying:
                    self._swap(slot, now, retire=slot in retiring)
        if machines is event.machines and hardware == event.hardware and not repeat and staying is None:
            return event
        return event._replace(
            machines=machines, hardware=hardware, misdiagnosed=staying is not None, repeat=repeat
        )

    def _count_failure(self, host: int, now: float) -> bool:
        """Note a failure of `host`; True when it is due for retirement."""
        self.failures[host] += 1
        k = self.config.retire_after_failures
        if k is None:
            return False
        recent = self.recent[host]
        recent.append(now)
        while recent and recent[0] < now - self.config.retire_window_days * DAY_S:
            recent.popleft()
        return len(recent) >= k

    def _repair_s(self, host: int) -> float:
        """Automatic repair, then manual if the automatic one did not fix it; it may fail silently."""
        cfg = self.config
        duration = self._draw(cfg.auto_repair_mean_s)
        if self.rng.random() >= cfg.auto_repair_fix_fraction:
            duration += self._draw(cfg.manual_repair_mean_s)
        self.faulty[host] = bool(cfg.silent_repair_failure_fraction > 0) and bool(
            self.rng.random() < cfg.silent_repair_failure_fraction
        )
        return duration

    def _draw(self, mean_s: float) -> float:
        cfg = self.config
        if mean_s == 0 or cfg.repair_distribution == "fixed":
            return mean_s
        if cfg.repair_distribution == "exponential":
            return float(self.rng.exponential(mean_s))
        sigma = cfg.repair_lognormal_sigma
        return float(self.rng.lognormal(lognormal_mu(mean_s, sigma), sigma))

    def _take_spare(self, now: float) -> tuple[float, int]:
        """The spare that enters the job and when it is there; waits for the next return if none is idle."""
        while self.returning and self.returning[0][0] <= now:
            self.pool.append(heapq.heappop(self.returning)[1])
        if self.pool:
            if self.config.host_selection == "fewest-failures":
                index = min(range(len(self.pool)), key=lambda i: self.failures[self.pool[i]])
            else:
                index = 0
            return now, self.pool.pop(index)
        back_at, host = heapq.heappop(self.returning)  # every failed host is in repair or being replaced
        return back_at, host


def nominal_rate_for(mean_rate_per_day: float, config: OperationsConfig) -> float:
    """The good machines' rate that gives `mean_rate_per_day` on average over good and bad machines."""
    return mean_rate_per_day / (1.0 + config.bad_machine_fraction * (config.bad_rate_multiplier - 1.0))
