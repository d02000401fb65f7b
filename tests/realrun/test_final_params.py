"""Final parameters: written with an index, compared tensor by tensor when two runs do not end equal."""

import json

import torch

from gemini_ft.realrun.final_params import BIN, INDEX, differences, write_final_params


def _state(scale: float = 1.0) -> dict[str, torch.Tensor]:
    return {
        "b.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) * scale,
        "a.bias": torch.ones(4, dtype=torch.bfloat16),
        "steps": torch.tensor([7], dtype=torch.int64),
    }


def test_equal_runs_have_no_differences_and_the_index_locates_every_tensor(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_final_params(a, _state())
    write_final_params(b, _state())
    assert differences(a, b) == []
    index = json.loads((a / INDEX).read_text())
    assert [e["name"] for e in index] == ["a.bias", "b.weight", "steps"]  # name order
    data = (a / BIN).read_bytes()
    weight = next(e for e in index if e["name"] == "b.weight")
    stored = torch.frombuffer(
        bytearray(data[weight["offset"] : weight["offset"] + weight["nbytes"]]), dtype=torch.float32
    )
    assert torch.equal(stored.reshape(weight["shape"]), _state()["b.weight"])


def test_a_difference_names_the_tensor_how_many_elements_and_by_how_much(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_final_params(a, _state())
    changed = _state()
    changed["b.weight"][1, 2] += 0.5
    write_final_params(b, changed)
    assert differences(a, b) == ["b.weight: 1 of 6 elements differ, max |diff| 0.5"]


def test_runs_of_different_models_say_so(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_final_params(a, _state())
    write_final_params(b, {"other": torch.zeros(3)})
    assert differences(a, b) == ["the two runs' final_params.json differ: not the same model"]
