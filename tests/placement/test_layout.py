"""Placement strategies: every machine has m distinct holders, itself first; the layouts are the paper's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemini_ft.common.errors import UserError
from gemini_ft.placement.layout import build_placement, dealt_group_sizes


@st.composite
def sizes(draw: st.DrawFn, max_machines: int = 40) -> tuple[int, int]:
    n = draw(st.integers(1, max_machines))
    return n, draw(st.integers(1, min(n, 5)))


def _build(strategy: str, n: int, m: int, domain_size: int = 1, seed: int = 0):
    return build_placement(strategy, n, m, domain_size=domain_size, rng=np.random.default_rng(seed))


@given(sizes(), st.sampled_from(["group", "ring", "mixed", "random"]), st.integers(0, 2**32 - 1))
def test_every_machine_has_m_distinct_holders_itself_first(nm, strategy, seed):
    n, m = nm
    if strategy == "group" and n % m:
        with pytest.raises(UserError, match="strategy = 'group'"):
            _build(strategy, n, m)
        return
    placement = _build(strategy, n, m, seed=seed)
    assert placement.holders.shape == (n, m)
    assert (placement.holders[:, 0] == np.arange(n)).all()
    assert ((placement.holders >= 0) & (placement.holders < n)).all()
    for i in range(n):
        assert len(set(placement.holders_of(i))) == m
        assert placement.peers_of(i) == placement.holders_of(i)[1:]
        # stored_on is the inverse relation of holders_of.
        for j in placement.holders_of(i):
            assert i in placement.stored_on(j)


@given(sizes(), st.integers(1, 8))
def test_domain_placement_puts_replicas_in_distinct_domains(nm, domain_size):
    n, m = nm
    if domain_size > n // m:  # a domain larger than the number of groups must share a group
        with pytest.raises(UserError) as err:
            _build("domain", n, m, domain_size)
        assert err.value.field == "domain_size"
        return
    placement = _build("domain", n, m, domain_size)
    assert (placement.holders[:, 0] == np.arange(n)).all()
    for i in range(n):
        domains = [h // domain_size for h in placement.holders_of(i)]
        assert len(set(domains)) == m
    # Disjoint groups: a group of m has one holder set, a larger (ring-replicated) group one per member.
    expected = sum(1 if size == m else size for size in dealt_group_sizes(n, m))
    assert len(placement.holder_sets()) == expected


def test_group_ring_mixed_layouts_match_the_paper():
    assert _build("group", 6, 2).holder_sets() == [frozenset({0, 1}), frozenset({2, 3}), frozenset({4, 5})]
    assert _build("ring", 5, 3).holders_of(4) == (4, 0, 1)
    mixed = _build("mixed", 7, 2)  # ⌊7/2⌋ − 1 = 2 groups of 2 and a last group of 3, ring-replicated
    assert mixed.holders_of(0) == (0, 1) and mixed.holders_of(3) == (3, 2)
    assert [mixed.holders_of(i) for i in (4, 5, 6)] == [(4, 5), (5, 6), (6, 4)]
    assert mixed.stored_on(4) == (4, 6)


def test_recoverable_needs_a_surviving_holder_for_every_failed_machine():
    group = _build("group", 8, 2)
    assert group.recoverable([0, 2, 4, 6])
    assert not group.recoverable([2, 3])
    assert group.recoverable([])


def test_random_placement_is_seeded():
    a = _build("random", 30, 3, seed=7).holders
    assert (a == _build("random", 30, 3, seed=7).holders).all()
    assert (a != _build("random", 30, 3, seed=8).holders).any()


@pytest.mark.parametrize(
    ("strategy", "n", "m", "kwargs", "field"),
    [
        ("ring", 4, 5, {}, "replicas"),
        ("ring", 4, 0, {}, "replicas"),
        ("ring", 0, 1, {}, "machines"),
        ("group", 10, 3, {}, "strategy"),
        ("bogus", 10, 2, {}, "strategy"),
        ("random", 10, 2, {"rng": None}, "strategy"),
        ("domain", 10, 2, {}, "domain_size"),
        ("domain", 8, 3, {"domain_size": 4}, "domain_size"),
    ],
)
def test_bad_sizes_and_names_raise_user_errors(strategy, n, m, kwargs, field):
    with pytest.raises(UserError) as err:
        build_placement(strategy, n, m, **kwargs)
    assert err.value.field == field


@given(
    sizes(),
    st.sampled_from(["ring", "mixed", "random"]),
    st.integers(0, 2**32 - 1),
    st.lists(st.lists(st.integers(0, 39), min_size=1, max_size=4), min_size=1, max_size=12),
)
def test_incremental_recoverability_matches_the_full_check(nm, strategy, seed, losses):
    """The engine checks a hardware loss only against the checkpoints the newly lost machines held: while
    the losses so far were recoverable, that answers exactly as checking every lost machine does."""
    n, m = nm
    placement = _build(strategy, n, m, seed=seed)
    lost: set[int] = set()
    for loss in losses:
        new = {machine % n for machine in loss} - lost
        lost |= new
        assert placement.still_recoverable(lost, new) == placement.recoverable(lost)
        if not placement.recoverable(lost):
            break
