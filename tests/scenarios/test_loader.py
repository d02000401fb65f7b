"""Loading scenarios: presets, `--set` overrides, sweeps, TOML round trips and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemini_ft.common.errors import UserError
from gemini_ft.scenarios.loader import (
    expand_sweep,
    from_toml_text,
    load_scenario,
    parse_overrides,
    preset_names,
    to_toml,
)


def _write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _one_line_error(excinfo: pytest.ExceptionInfo[UserError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_presets_exist():
    assert {"gpt2-100b-p4d", "gpt2-40b-p3dn", "llama3-405b", "opt-175b"} <= set(preset_names())


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_and_sweep_point_validates_and_round_trips(name):
    scenario = load_scenario(name)
    assert scenario.name == name
    points = expand_sweep(scenario)
    expected = 1
    for values in scenario.sweep.values():
        expected *= len(values)
    assert len(points) == expected
    for point, concrete in points:
        assert concrete.sweep == {}
        for path, value in point.items():
            section, field = path.split(".")
            assert getattr(getattr(concrete, section), field) == value
    assert from_toml_text(to_toml(scenario)) == scenario


def test_the_paper_preset_sweeps_policy_and_failure_rate():
    points = expand_sweep(load_scenario("gpt2-100b-p4d"))
    assert len(points) == 4 * 3
    assert points[0][0] == {"checkpoint.policy": "gemini", "failures.rate_per_machine_per_day": 0.005}


def test_set_overrides_fields_and_parses_values_as_toml():
    scenario = load_scenario(
        "gpt2-100b-p4d", ["cluster.machines=128", "checkpoint.placement=ring", "name=mine"]
    )
    assert scenario.cluster.machines == 128
    assert scenario.checkpoint.placement == "ring"
    assert scenario.name == "mine"
    assert parse_overrides(["a.b=1.5", "a.c=[1, 2]", "a.d=plain words"]) == {
        "a.b": 1.5,
        "a.c": [1, 2],
        "a.d": "plain words",
    }
    assert load_scenario("gpt2-100b-p4d", {"cluster.machines": 64}).cluster.machines == 64


def test_dotted_and_nested_sweep_tables_are_the_same(tmp_path):
    dotted = _write(
        tmp_path, '[sweep]\n"cluster.machines" = [8, 16]\n"checkpoint.replicas" = [2, 4]\n', "a.toml"
    )
    nested = _write(
        tmp_path, "[sweep.cluster]\nmachines = [8, 16]\n[sweep.checkpoint]\nreplicas = [2, 4]\n", "b.toml"
    )
    assert [p for p, _ in expand_sweep(load_scenario(dotted))] == [
        p for p, _ in expand_sweep(load_scenario(nested))
    ]
    assert len(expand_sweep(load_scenario(dotted))) == 4


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('name = "x"\n[cluster\nmachines = 3\n', ["malformed TOML"]),
        ('[cluster]\nmachines = "many"\n', ["cluster.machines = 'many'", "integer"]),
        ("[cluster]\nmachine = 3\n", ["cluster.machine = 3", "unknown field", "machines"]),
        ("[clusters]\nmachines = 3\n", ["clusters", "unknown field", "cluster"]),
        (
            "[cluster]\nmachines = 2\n[checkpoint]\nreplicas = 3\n",
            ["checkpoint.replicas = 3", "cluster.machines = 2"],
        ),
        ('[sweep]\n"cluster.machines" = []\n', ["sweep.cluster.machines", "at least one value"]),
        ('[sweep]\n"cluster.machines" = [16, 0]\n', ["cluster.machines = 0", "greater than or equal to 1"]),
        ('[sweep]\n"cluster.nodes" = [16]\n', ["cluster.nodes", "unknown field"]),
        ("[checkpoint]\nplacement = 'star'\n", ["checkpoint.placement = 'star'", "group"]),
        (
            "[checkpoint]\ntransfer_latency_s = -0.5\n",
            ["checkpoint.transfer_latency_s = -0.5", "greater than or equal to 0"],
        ),
        (
            "[checkpoint]\nreplication_gbps = 0\n",
            ["checkpoint.replication_gbps = 0", "greater than 0"],
        ),
    ],
)
def test_bad_files_give_one_line_errors_naming_the_field(tmp_path, text, needles):
    with pytest.raises(UserError) as excinfo:
        load_scenario(_write(tmp_path, text))
    message = _one_line_error(excinfo)
    for needle in needles:
        assert needle in message


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (["cluster.foo=1"], ["cluster.foo = 1", "unknown field", "machines"]),
        (["racks.size=1"], ["racks.size", "unknown section", "cluster"]),
        (["oops"], ["--set = 'oops'", "section.field=value"]),
        (["cluster.machines=-4"], ["cluster.machines = -4"]),
        (["checkpoint.replicas=40"], ["checkpoint.replicas = 40", "at most cluster.machines = 16"]),
        (
            ["checkpoint.local_retrieval_latency_s=-0.01"],
            ["checkpoint.local_retrieval_latency_s = -0.01", "greater than or equal to 0"],
        ),
        (["checkpoint.replication_gbps=-2.5"], ["checkpoint.replication_gbps = -2.5", "greater than 0"]),
    ],
)
def test_bad_overrides_give_one_line_errors(overrides, needles):
    with pytest.raises(UserError) as excinfo:
        load_scenario("gpt2-100b-p4d", overrides)
    message = _one_line_error(excinfo)
    for needle in needles:
        assert needle in message


def test_missing_files_and_unknown_presets(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_scenario(tmp_path / "absent.toml")
    with pytest.raises(UserError, match="presets are: gpt2-100b-p4d"):
        load_scenario("no-such-preset")
