"""Recovery's choice of a step: the newest one every shard still has a verified copy of."""

import torch

from gemini_ft.realrun.engine.recovery import choose


def test_choose_newest_step_every_shard_has():
    # inventory[reporter, owner, slot]; shard 1's owner lost everything, reporter 0 holds step 4 of it.
    inventory = torch.tensor([[[5, 4], [4, 3]], [[-1, -1], [-1, -1]]])
    assert choose(inventory) == (4, [0, 0])
    inventory = torch.tensor([[[5, 4], [-1, -1]], [[-1, -1], [5, 4]]])
    assert choose(inventory) == (5, [0, 1])
    assert choose(torch.tensor([[[5, -1], [-1, -1]], [[-1, -1], [-1, -1]]])) is None
