"""Remote persistent storage as one shared resource: its aggregate bandwidth is divided among transfers.

Every persistent upload and every retrieval from storage is a `Transfer` here. A transfer first pays
the storage's fixed latency (which uses no bandwidth), then moves its bytes while the bandwidth is
split equally among all transfers moving bytes at that moment (processor sharing). The arithmetic is
exact and lazy: nothing is scheduled, completion times are computed when the engine asks, assuming
no transfer starts later (the engine starts none while it waits on one: uploads start only while
training, retrievals only during a recovery, and a failure ends every transfer of the job).

What the engine allows in flight is its own rule (see `gemini_ft.sim.engine`): at most one upload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_EPS = 1e-9


@dataclass(eq=False)
class Transfer:
    """One upload or retrieval: `kind` is "upload" or "retrieval"; `remaining_bytes` as of `storage.now`."""

    kind: str
    nbytes: float
    started_s: float
    ready_s: float  # when its fixed latency is over and its bytes start to move
    remaining_bytes: float
    done_s: float | None = None  # when it completed (None: in flight or cancelled)


class SharedStorage:
    """The transfers in flight on one remote storage of `bandwidth_gbps` and per-transfer `latency_s`."""

    def __init__(self, bandwidth_gbps: float, latency_s: float) -> None:
        if bandwidth_gbps <= 0 or latency_s < 0:
            raise ValueError("storage needs a positive bandwidth and a non-negative latency")
        self.bits_per_s = bandwidth_gbps * 1e9
        self.latency_s = latency_s
        self.now = 0.0  # the time `remaining_bytes` of the transfers in flight refer to
        self.transfers: list[Transfer] = []
        # Completion times with no later arrival: they change only when a transfer starts or is cancelled.
        self._done: dict[Transfer, float] = {}

    def start(self, kind: str, nbytes: float, now: float) -> Transfer:
        """A new transfer of `nbytes` from `now`; it shares the bandwidth with those still in flight."""
        self._advance(now)
        transfer = Transfer(kind, nbytes, now, now + self.latency_s, nbytes)
        self.transfers.append(transfer)
        self._done, _ = self._simulate(math.inf)
        return transfer

    def finish_s(self, transfer: Transfer) -> float:
        """When `transfer` completes if nothing else starts; infinity for a cancelled one."""
        if transfer.done_s is not None:
            return transfer.done_s
        return self._done.get(transfer, math.inf)

    def in_flight(self, kind: str, now: float) -> bool:
        """Whether a transfer of `kind` is still running at `now`."""
        return any(t.kind == kind and self._done[t] > now + _EPS for t in self.transfers)

    def cancel_all(self, now: float) -> None:
        """Every transfer still running at `now` dies (the job that drove them failed); one that completed
        by then keeps its completion time. (No need to bring the dying ones' bytes to `now`: at every
        failure, so `_done`, exact since the last start, answers.)"""
        self._check_forward(now)
        for transfer in self.transfers:
            done = self._done.get(transfer, math.inf)
            if done <= now:
                transfer.done_s, transfer.remaining_bytes = done, 0.0
        self.transfers.clear()
        self._done = {}
        self.now = max(self.now, now)

    def transfer_s(self, nbytes: float) -> float:
        """One transfer of `nbytes` with the storage to itself: latency + bytes at the full bandwidth."""
        return self.latency_s + nbytes * 8 / self.bits_per_s

    # ---- exact processor sharing --------------------------------------------------------------
    def _check_forward(self, now: float) -> None:
        if now < self.now - _EPS:
            raise ValueError(f"storage time runs forward only: {now} < {self.now}")

    def _advance(self, now: float) -> None:
        """Bring every transfer to `now`: finished ones leave with their completion time, the others
        keep the bytes they still have to move."""
        self._check_forward(now)
        if self.transfers:
            done, remaining = self._simulate(now)
            for transfer in list(self.transfers):
                if transfer in done:
                    transfer.done_s, transfer.remaining_bytes = done[transfer], 0.0
                    self.transfers.remove(transfer)
                else:
                    transfer.remaining_bytes = remaining[transfer]
        self.now = max(self.now, now)

    def _simulate(self, until: float) -> tuple[dict[Transfer, float], dict[Transfer, float]]:
        """From self.now to `until` with no arrival: (completion time of each transfer done by then,
        bytes left of each transfer still running then). Between two completions or latency ends the
        transfers moving bytes each get an equal share of the bandwidth."""
        if len(self.transfers) == 1:
            return self._simulate_alone(self.transfers[0], until)
        remaining = {x: x.remaining_bytes for x in self.transfers}
        done: dict[Transfer, float] = {}
        t = self.now
        while len(done) < len(remaining) and t < until:
            pending = [x for x in remaining if x not in done]
            moving = [x for x in pending if x.ready_s <= t + _EPS]
            next_ready = min((x.ready_s for x in pending if x.ready_s > t + _EPS), default=math.inf)
            if not moving:
                t = min(next_ready, until)
                continue
            share = self.bits_per_s / len(moving)  # bits per second each
            first = min(moving, key=lambda x: remaining[x])
            finish = t + remaining[first] * 8 / share
            step_end = min(finish, next_ready, until)
            for x in moving:
                left = remaining[x] - share * (step_end - t) / 8
                remaining[x] = 0.0 if (x is first and step_end == finish) else max(0.0, left)
            t = step_end
            for x in moving:
                if remaining[x] <= _EPS * max(1.0, x.nbytes):
                    done[x] = t
        return done, {x: b for x, b in remaining.items() if x not in done}

    def _simulate_alone(
        self, x: Transfer, until: float
    ) -> tuple[dict[Transfer, float], dict[Transfer, float]]:
        """`_simulate` for one transfer in flight, the engine's usual case (it allows one upload at a time),
        step for step the same arithmetic without the general loop's bookkeeping."""
        t = self.now
        if t >= until:
            return {}, {x: x.remaining_bytes}
        if x.ready_s > t + _EPS:
            t = min(x.ready_s, until)
            if t >= until:
                return {}, {x: x.remaining_bytes}
        finish = t + x.remaining_bytes * 8 / self.bits_per_s
        if finish <= until:
            return {x: finish}, {}
        left = max(0.0, x.remaining_bytes - self.bits_per_s * (until - t) / 8)
        if left <= _EPS * max(1.0, x.nbytes):
            return {x: until}, {}
        return {}, {x: left}
