"""Checkpoint placement: which machines hold each machine's in-memory checkpoint (Gemini §4).

Every machine keeps one replica in its own CPU memory and sends m − 1 to peers. Strategies:
`group` (N/m disjoint groups; needs m | N), `ring` (the next m − 1 machines), `mixed` (the paper's
Algorithm 1 for m ∤ N: ⌊N/m⌋ groups, the last one larger and ring-replicated), `random` (m − 1
distinct peers drawn with a seeded generator) and `domain` (machines dealt domain by domain,
round-robin, into ⌊N/m⌋ groups, so a machine's replicas sit in m different failure domains). The real runner replicates
with exactly these placements.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from gemini_ft.common.errors import UserError
from gemini_ft.placement.registry import PLACEMENTS, check_placement

MATERIALIZED_LIMIT = 10_000_000
"""The most machines a placement table (N × m integers) is built for."""


@dataclass(frozen=True, eq=False)
class Placement:
    """`holders[i]` = the machines holding machine i's checkpoint, i itself first (shape N × m)."""

    strategy: str
    machines: int
    replicas: int
    holders: np.ndarray
    domain_size: int | None = None

    def holders_of(self, machine: int) -> tuple[int, ...]:
        return tuple(int(h) for h in self.holders[machine])

    def peers_of(self, machine: int) -> tuple[int, ...]:
        """Where `machine` sends its m − 1 remote replicas."""
        return self.holders_of(machine)[1:]

    def stored_on(self, machine: int) -> tuple[int, ...]:
        """The machines whose checkpoints `machine` holds (itself first)."""
        owners = np.nonzero((self.holders == machine).any(axis=1))[0]
        return (machine, *sorted(int(o) for o in owners if o != machine))

    def recoverable(self, failed: Iterable[int]) -> bool:
        """True when every machine still has a surviving holder of its checkpoint."""
        lost = failed if isinstance(failed, set | frozenset) else set(failed)
        rows = self._rows
        # A machine that is up holds its own checkpoint: only lost ones can lose theirs.
        return not any(lost.issuperset(rows[i]) for i in lost)

    def still_recoverable(self, lost: set[int], new: Iterable[int]) -> bool:
        """`recoverable(lost)` for a `lost` that was recoverable without the machines in `new`: only a
        checkpoint that one of them held can have lost its last holder. The engine asks at every hardware
        failure, and a chain of them during recoveries makes `lost` long (this costs O(|new| · m²))."""
        rows, (owners, bounds) = self._rows, self._held_by
        for machine in new:
            for i in owners[bounds[machine] : bounds[machine + 1]]:
                if i in lost and lost.issuperset(rows[i]):
                    return False
        return True

    @cached_property
    def _rows(self) -> list[list[int]]:
        # The holders as Python lists, built once: the engine reads them at hardware failures.
        return self.holders.tolist()

    @cached_property
    def _held_by(self) -> tuple[list[int], list[int]]:
        """(owners, bounds): the machines whose checkpoints machine x holds are
        owners[bounds[x]:bounds[x + 1]] (one sort of the holder table, built once per placement)."""
        flat = self.holders.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(self.machines + 1))
        return (order // self.replicas).tolist(), bounds.tolist()

    def holder_sets(self) -> list[frozenset[int]]:
        """Distinct holder sets: the failure sets that lose some checkpoint are supersets of these."""
        return sorted({frozenset(int(h) for h in row) for row in self.holders}, key=sorted)

    def table(self) -> list[dict[str, object]]:
        return [{"machine": i, "holders": list(self.holders_of(i))} for i in range(self.machines)]


def check_sizes(machines: int, replicas: int) -> None:
    if machines < 1:
        raise UserError("machines", machines, "must be an integer ≥ 1")
    if replicas < 1:
        raise UserError("replicas", replicas, "must be an integer ≥ 1")
    if replicas > machines:
        raise UserError("replicas", replicas, f"must be at most machines = {machines}")


def build_placement(
    strategy: str,
    machines: int,
    replicas: int,
    *,
    domain_size: int | None = None,
    rng: np.random.Generator | None = None,
) -> Placement:
    """The placement of `replicas` copies of each of `machines` checkpoints by `strategy`."""
    check_sizes(machines, replicas)
    check_placement(strategy, machines, replicas)
    if machines > MATERIALIZED_LIMIT:
        raise UserError(
            "machines",
            machines,
            f"a placement is built machine by machine: at most {MATERIALIZED_LIMIT:,}"
            " (the exact odds of group, ring and mixed need no placement: use them)",
        )
    if strategy == "group":
        holders = _grouped(np.arange(machines), replicas)
    elif strategy == "ring":
        holders = _ring(np.arange(machines), replicas)
    elif strategy == "mixed":
        holders = _grouped(np.arange(machines), replicas)
    elif strategy == "random":
        if rng is None:
            raise UserError("strategy", "random", "needs a seeded generator (rng)")
        holders = _random(machines, replicas, rng)
    elif strategy == "domain":
        if domain_size is None or domain_size < 1:
            raise UserError("domain_size", domain_size, "strategy 'domain' needs a failure-domain size ≥ 1")
        groups = machines // replicas
        if domain_size > groups:
            raise UserError(
                "domain_size",
                domain_size,
                f"must be at most machines // replicas = {groups}: a domain larger than the number of groups"
                " would put two replicas of one checkpoint in the same domain",
            )
        holders = _dealt(machines, replicas)
    else:  # the registry names a strategy this module cannot build
        raise AssertionError(f"no builder for placement {strategy!r} of {PLACEMENTS}")
    return Placement(strategy, machines, replicas, holders, domain_size)


@lru_cache(maxsize=32)
def shared_placement(
    strategy: str, machines: int, replicas: int, domain_size: int | None = None
) -> Placement:
    """A placement that no seed changes (every strategy but `random`), built once per process and shared
    read-only by every run that asks for it."""
    placement = build_placement(strategy, machines, replicas, domain_size=domain_size)
    placement.holders.setflags(write=False)  # shared by every run of a grid point
    return placement


def _grouped(order: np.ndarray, m: int) -> np.ndarray:
    """Algorithm 1 over machines listed in `order`: groups of m; with m ∤ N the last group is larger
    (m + N mod m machines) and replicates ring-wise inside itself."""
    n = len(order)
    holders = np.empty((n, m), dtype=np.int64)
    full_groups = n // m
    plain = (full_groups - 1) * m if n % m else n
    if plain:
        groups = order[:plain].reshape(-1, m)
        for offset in range(m):  # member `offset` of each group lists the group starting from itself
            holders[groups[:, offset]] = groups[:, (offset + np.arange(m)) % m]
    if plain < n:
        holders[order[plain:]] = _ring(order[plain:], m)
    return holders


def _ring(order: np.ndarray, m: int) -> np.ndarray:
    """Row j (for machine order[j]) = order[j], order[j+1], …, order[j+m−1], cyclically."""
    n = len(order)
    return order[(np.arange(n)[:, None] + np.arange(m)[None, :]) % n]


def _random(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Each machine draws m − 1 distinct peers uniformly among the others."""
    holders = np.empty((n, m), dtype=np.int64)
    holders[:, 0] = np.arange(n)
    if m == 1:
        return holders
    # Draw from the N − 1 others by shifting past the machine itself, then redraw rows with repeats.
    peers = np.empty((n, m - 1), dtype=np.int64)
    bad = np.arange(n)
    while len(bad):
        draw = rng.integers(0, n - 1, size=(len(bad), m - 1))
        draw = draw + (draw >= bad[:, None])
        peers[bad] = draw
        sorted_rows = np.sort(peers[bad], axis=1)
        repeats = (
            (sorted_rows[:, 1:] == sorted_rows[:, :-1]).any(axis=1) if m > 2 else np.zeros(len(bad), bool)
        )
        bad = bad[repeats]
    holders[:, 1:] = peers
    return holders


def dealt_group_sizes(n: int, m: int) -> list[int]:
    """Sizes of the ⌊N/m⌋ groups that `domain` deals N machines into (⌈N/G⌉ first, then ⌊N/G⌋)."""
    groups = n // m
    base, extra = divmod(n, groups)
    return [base + 1] * extra + [base] * (groups - extra)


def _dealt(n: int, m: int) -> np.ndarray:
    """Deal machines 0..N−1 (numbered domain by domain) round-robin into G = ⌊N/m⌋ groups: group g is
    g, g + G, g + 2G, … A domain of at most G consecutive machines meets each group at most once, and a
    group larger than m replicates ring-wise inside itself (Algorithm 1's rule for the odd group)."""
    groups = n // m
    base, extra = divmod(n, groups)
    holders = np.empty((n, m), dtype=np.int64)
    for first, last, size in ((0, extra, base + 1), (extra, groups, base)):
        if first == last:
            continue
        members = np.arange(first, last)[None, :] + groups * np.arange(size)[:, None]  # (size, groups)
        window = (np.arange(size)[:, None] + np.arange(m)[None, :]) % size  # (size, m)
        holders[members] = np.transpose(members[window], (0, 2, 1))
    return holders
