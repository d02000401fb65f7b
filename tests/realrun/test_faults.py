"""Parsing of --fail specs and seeded random schedules."""

import pytest

from gemini_ft.common.errors import UserError
from gemini_ft.realrun.faults import FaultInjector, parse_failures


def test_parse_specs():
    failures = parse_failures(["sw@step=30:rank=1", "hw@step=50:machine=2:during=replicate"], 4, 2, 100)
    assert [(f.kind, f.step, f.target, f.during) for f in failures] == [
        ("sw", 30, 1, "step"),
        ("hw", 50, 2, "replicate"),
    ]
    assert failures[1].to_text() == "hw@step=50:machine=2:during=replicate"


@pytest.mark.parametrize(
    "spec",
    ["sw@step=3", "xx@step=3:rank=0", "sw@step=0:rank=0", "sw@step=3:rank=9", "hw@step=3:machine=4",
     "sw@step=3:rank=0:during=lunch", "sw@step=three:rank=0", "sw", "random:count=0", "random:bogus=1"],
)  # fmt: skip
def test_malformed_specs_name_the_field(spec):
    # The library names the config field; `gemini-ft realrun` shows it as --fail (tests/gemini_ft).
    with pytest.raises(UserError, match=r"^failures = "):
        parse_failures([spec], 4, 2, 10)


def test_random_schedule_is_seeded():
    a = parse_failures(["random:count=3:seed=7"], 4, 1, 50)
    b = parse_failures(["random:count=3:seed=7"], 4, 1, 50)
    c = parse_failures(["random:count=3:seed=8"], 4, 1, 50)
    assert a == b and a != c
    assert len({f.step for f in a}) == 3 and all(2 <= f.step < 50 for f in a)


def test_a_failure_fires_once(tmp_path, monkeypatch):
    struck = []
    failures = parse_failures(["sw@step=2:rank=0"], 1, 1, 5)
    injector = FaultInjector(failures, tmp_path, rank=0, machine=0, local_rank=0)
    monkeypatch.setattr(injector, "_strike", struck.append)
    injector.check(1, "step")
    injector.check(2, "snapshot")
    assert struck == []
    injector.check(2, "step")
    again = FaultInjector(failures, tmp_path, rank=0, machine=0, local_rank=0)  # a restarted worker
    monkeypatch.setattr(again, "_strike", struck.append)
    again.check(2, "step")
    assert struck == failures
