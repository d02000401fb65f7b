"""The Python API's mistakes are `UserError`s naming the field, as the command's are (no TypeError,
FileNotFoundError or KeyError from deep inside)."""

from __future__ import annotations

import pytest

import gemini_ft as g
from gemini_ft.common.errors import UserError


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: g.load_scenario(123), "scenario"),
        (lambda: g.load_scenario("no-such-preset"), "scenario"),
        (lambda: g.simulate("gpt2-100b-p4d", seeds=[]), "seeds"),
        (lambda: g.simulate("gpt2-100b-p4d", seeds=[-1]), "seed"),
        (lambda: g.sweep("gpt2-100b-p4d", out="/proc/gemini-ft"), "out"),
        (lambda: g.recovery_odds(machines=-1, replicas=2, failures=[1]), "machines"),
        (lambda: g.interleave("gpt2-40b-p3dn", schemes=["fast"]), "scheme"),
        (lambda: g.advise("gpt2-100b-p4d", workers=0), "workers"),
        (lambda: g.advise("gpt2-100b-p4d", seed=-1), "seed"),
        (lambda: g.read_results("/nonexistent/results"), "RESULTS"),
    ],
)
def test_a_mistake_is_a_user_error_naming_its_field(call, field) -> None:
    with pytest.raises(UserError) as caught:
        call()
    assert str(caught.value).startswith(f"{field} = ")
