"""Model sizes, deterministic initialisation, the Llama model's parts, and the data stream."""

import pytest
import torch

from gemini_ft.common.errors import UserError
from gemini_ft.realrun.config import parse_model_size
from gemini_ft.realrun.worker.data import SyntheticStream
from gemini_ft.realrun.worker.model import LlamaBlock, build_model


@pytest.mark.parametrize("kind", ["gpt", "llama"])
@pytest.mark.parametrize(
    "size, low, high", [("1m", 0.7e6, 1.4e6), ("50m", 40e6, 60e6), ("1b", 0.85e9, 1.15e9)]
)
def test_sizes_land_near_the_target(size, low, high, kind):
    shape = parse_model_size(size, kind)
    assert low <= shape.parameters <= high


@pytest.mark.parametrize("kind", ["gpt", "llama"])
def test_the_formula_counts_the_parameters_the_model_has(kind):
    for size in ("tiny", "1m"):
        shape = parse_model_size(size, kind)
        assert sum(p.numel() for p in build_model(kind, shape, 0).parameters()) == shape.parameters


@pytest.mark.parametrize("size", ["huge", "5", "3b", "-1m"])
def test_bad_sizes(size):
    with pytest.raises(UserError, match=r"^model_size = "):
        parse_model_size(size)


def test_llama_attention_is_grouped_query_and_causal():
    shape = parse_model_size("1m", "llama")
    block = LlamaBlock(shape)
    assert block.wk.out_features == block.wq.out_features // 2  # half as many key/value heads
    model = build_model("llama", shape, 0)
    tokens = torch.randint(0, shape.vocab, (1, 16), generator=torch.Generator().manual_seed(0))
    changed = tokens.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % shape.vocab
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert torch.equal(a[0, :10], b[0, :10])  # a later token never changes an earlier output
    assert not torch.equal(a[0, 10:], b[0, 10:])


@pytest.mark.parametrize("kind", ["gpt", "llama"])
def test_init_and_data_are_pure_functions_of_the_seed(kind):
    shape = parse_model_size("tiny", kind)
    torch.manual_seed(123)  # the global RNG must not matter
    a = build_model(kind, shape, 5).state_dict()
    torch.manual_seed(456)
    b = build_model(kind, shape, 5).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_stream_is_a_function_of_its_position_which_only_advance_moves():
    shape = parse_model_size("tiny")
    first, second = SyntheticStream(1, 0, 2, shape), SyntheticStream(1, 0, 2, shape)
    assert torch.equal(first.batch()[0], first.batch()[0])  # reading does not advance
    drawn = [first.next()[0] for _ in range(3)]
    assert int(first.position) == 3
    second.position.fill_(2)  # what loading a checkpoint does, in place
    assert torch.equal(second.batch()[0], drawn[2]) and not torch.equal(drawn[1], drawn[2])
    assert not torch.equal(
        SyntheticStream(1, 1, 2, shape).batch()[0], SyntheticStream(1, 0, 2, shape).batch()[0]
    )
