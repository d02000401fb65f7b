"""Recovery's choice of a step: the newest one every shard still has a verified copy of (its own or a
twin's, under HSDP), and where each rank takes it from."""

import torch

from gemini_ft.realrun.engine.recovery import choose


def test_choose_newest_step_every_shard_has():
    # inventory[reporter, owner, slot]; shard 1's owner lost everything, reporter 0 holds step 4 of it.
    inventory = torch.tensor([[[5, 4], [4, 3]], [[-1, -1], [-1, -1]]])
    assert choose(inventory) == (4, [0, 0], [0, 1])
    inventory = torch.tensor([[[5, 4], [-1, -1]], [[-1, -1], [5, 4]]])
    assert choose(inventory) == (5, [0, 1], [0, 1])
    assert choose(torch.tensor([[[5, -1], [-1, -1]], [[-1, -1], [-1, -1]]])) is None


def _inventory(rows: dict[tuple[int, int], list[int]], world: int = 4) -> torch.Tensor:
    table = torch.full((world, world, 2), -1, dtype=torch.int64)
    for (reporter, owner), steps in rows.items():
        table[reporter, owner, : len(steps)] = torch.tensor(steps)
    return table


# HSDP on 2 machines × 2 ranks: replica groups {0, 1} and {2, 3}; ranks 0 and 2 (and 1 and 3) are twins.
TWINS = ((2,), (3,), (0,), (1,))


def test_a_lost_replica_group_is_restored_from_the_surviving_one_first():
    # Machine 1 (ranks 2, 3) lost its memory; machine 0 holds its own shards and, by the Gemini
    # placement, replicas of 2 and 3: the twins' own copies win over the CPU-memory replicas.
    rows = {(0, 0): [5], (1, 1): [5], (0, 2): [5], (1, 3): [5]}
    assert choose(_inventory(rows), TWINS) == (5, [0, 1, 0, 1], [0, 1, 0, 1])


def test_a_cpu_memory_replica_serves_when_no_twin_has_the_step():
    # Rank 0's own newest copy failed (it holds step 4) and rank 2 lost its memory: for step 5 both
    # take a CPU-memory replica of their own shard, held on rank 1's machine.
    rows = {(0, 0): [4], (1, 0): [5], (1, 1): [5], (1, 2): [5], (3, 3): [5]}
    assert choose(_inventory(rows), TWINS) == (5, [1, 1, 1, 3], [0, 1, 2, 3])


def test_without_twins_a_shard_of_another_rank_never_stands_in():
    rows = {(0, 0): [5], (1, 1): [5], (3, 3): [5]}  # nobody holds shard 2
    assert choose(_inventory(rows)) is None
    assert choose(_inventory(rows), TWINS) == (5, [0, 1, 0, 3], [0, 1, 0, 3])
