"""The placement registry: every placement strategy's name, what it needs and where it runs.

One table instead of name lists in the schema, the simulator, the probability tables and the real
runner: the schema's `checkpoint.placement` choices, `gemini-ft placement --strategy` and
`realrun --placement` all come from here, and `check_placement` is the one divisibility rule.
The builders themselves live in `gemini_ft.placement.layout`, which checks at import that it builds every name here.
"""

from __future__ import annotations

from dataclasses import dataclass

from gemini_ft.common.errors import UserError


@dataclass(frozen=True)
class PlacementKind:
    """One strategy: what it does and what it needs."""

    name: str
    summary: str
    """One line for help texts."""
    needs_divisible: bool = False
    """Replicas m must divide machines N."""
    needs_domain_size: bool = False
    """Needs the failure-domain size."""
    random: bool = False
    """Drawn with a seeded generator."""
    real_runner: bool = False
    """The real runner can replicate with it."""


REGISTRY: dict[str, PlacementKind] = {
    kind.name: kind
    for kind in (
        PlacementKind(
            "group", "N/m disjoint groups of m; needs m | N", needs_divisible=True, real_runner=True
        ),
        PlacementKind("ring", "each machine to the next m − 1", real_runner=True),
        PlacementKind("mixed", "Algorithm 1: ⌊N/m⌋ groups, the last larger and ring-wise", real_runner=True),
        PlacementKind("random", "m − 1 distinct peers drawn at random", random=True),
        PlacementKind("domain", "no two replicas in one failure domain", needs_domain_size=True),
    )
}
PLACEMENTS: tuple[str, ...] = tuple(REGISTRY)
REAL_PLACEMENTS: tuple[str, ...] = tuple(name for name, kind in REGISTRY.items() if kind.real_runner)


def check_placement(
    name: str, machines: int, replicas: int, *, field: str = "strategy", allowed: tuple[str, ...] = PLACEMENTS
) -> None:
    """Raise a UserError naming `field` when `name` is unknown or cannot place m replicas on N machines."""
    kind = REGISTRY.get(name)
    if kind is None or name not in allowed:
        raise UserError(field, name, f"unknown; allowed: {', '.join(allowed)}")
    if kind.needs_divisible and machines % replicas:
        raise UserError(
            field, name, f"needs replicas ({replicas}) to divide machines ({machines}); use 'mixed'"
        )
