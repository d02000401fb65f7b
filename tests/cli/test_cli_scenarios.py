"""`gemini-ft scenarios list|show|validate` through the real entry point.

(Named test_scenarios_cli.py, not test_cli.py: tests/analysis/test_cli.py already exists and pytest's
default import mode refuses two test modules with the same basename in one run.)
"""

from __future__ import annotations

import pytest

from gemini_ft.cli import main
from gemini_ft.scenarios.loader import from_toml_text, load_scenario, preset_names


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["scenarios", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_prints_every_preset_with_its_description(capsys):
    code, out, err = _run(capsys, "list")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == preset_names()
    assert "GPT-2 100B" in lines[0]


def test_show_prints_the_resolved_scenario_with_overrides(capsys):
    code, out, _ = _run(
        capsys, "show", "gpt2-100b-p4d", "--set", "cluster.machines=32", "--set", "checkpoint.replicas=4"
    )
    assert code == 0
    shown = from_toml_text(out)
    assert shown.cluster.machines == 32 and shown.checkpoint.replicas == 4
    assert shown == load_scenario("gpt2-100b-p4d", ["cluster.machines=32", "checkpoint.replicas=4"])


def test_validate_counts_sweep_points(capsys, tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text("[run]\nseeds = 2\n[sweep.cluster]\nmachines = [8, 16, 32]\n")
    code, out, _ = _run(capsys, "validate", path)
    assert code == 0
    assert out.strip() == f"{path}: valid (3 sweep points × 2 seeds)"


@pytest.mark.parametrize(
    ("text", "argv", "needle"),
    [
        ("[cluster\n", (), "malformed TOML"),
        ('[cluster]\nmachines = "x"\n', (), "cluster.machines = 'x'"),
        ("[cluster]\nnodes = 2\n", (), "cluster.nodes = 2: unknown field"),
        ("[rack]\nsize = 2\n", (), "rack"),
        ("[cluster]\nmachines = 2\n[checkpoint]\nreplicas = 3\n", (), "checkpoint.replicas = 3"),
        ('[sweep]\n"cluster.machines" = []\n', (), "sweep.cluster.machines needs at least one value"),
        ("", ("--set", "cluster.machines=0"), "cluster.machines = 0"),
        ("", ("--set", "cluster"), "--set = 'cluster'"),
    ],
)
def test_bad_input_exits_2_with_one_stderr_line(capsys, tmp_path, text, argv, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, out, err = _run(capsys, "validate", path, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("gemini-ft: error: ")
    assert needle in err


def test_unknown_preset_and_missing_action(capsys):
    code, _, err = _run(capsys, "show", "nope")
    assert code == 2 and err.count("\n") == 1 and "presets are:" in err
    assert main(["scenarios"]) == 2  # a parse error is returned as the exit status, never raised
    assert capsys.readouterr().err.count("\n") == 1
