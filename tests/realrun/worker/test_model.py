"""Model sizes, deterministic initialisation and data."""

import pytest
import torch

from gemini_ft.common.errors import UserError
from gemini_ft.realrun.config import parse_model_size
from gemini_ft.realrun.worker.model import build_model, synthetic_batch


@pytest.mark.parametrize(
    "size, low, high", [("1m", 0.7e6, 1.4e6), ("50m", 40e6, 60e6), ("1b", 0.85e9, 1.15e9)]
)
def test_sizes_land_near_the_target(size, low, high):
    shape = parse_model_size(size)
    assert low <= shape.parameters <= high


def test_tiny_model_counts_its_parameters():
    shape = parse_model_size("tiny")
    assert sum(p.numel() for p in build_model(shape, 0).parameters()) == shape.parameters


@pytest.mark.parametrize("size", ["huge", "5", "3b", "-1m"])
def test_bad_sizes(size):
    with pytest.raises(UserError, match=r"^model_size = "):
        parse_model_size(size)


def test_init_and_data_are_pure_functions_of_the_seed():
    shape = parse_model_size("tiny")
    torch.manual_seed(123)  # the global RNG must not matter
    a = build_model(shape, 5).state_dict()
    torch.manual_seed(456)
    b = build_model(shape, 5).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(synthetic_batch(1, 7, 0, 2, shape)[0], synthetic_batch(1, 7, 0, 2, shape)[0])
    assert not torch.equal(synthetic_batch(1, 7, 0, 2, shape)[0], synthetic_batch(1, 8, 0, 2, shape)[0])
