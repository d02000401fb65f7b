"""`gemini-ft simulate` and `gemini-ft sweep` from the command line, including bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gemini_ft.cli import main
from gemini_ft.sim.results import read_results

FAST = ["--set", "run.duration_days=3"]


def test_simulate_prints_table_and_writes_parquet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.parquet"
    assert main(["simulate", "gpt2-100b-p4d", *FAST, "--seeds", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "gemini" in printed and "ratio" in printed and str(out) in printed
    results = read_results(out)
    assert list(results.summary["seed"]) == [0, 1]
    assert (tmp_path / "run.failures.parquet").is_file()
    assert 'policy = "gemini"' in results.scenario_toml


def test_simulate_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "gpt2-100b-p4d", *FAST, "--set", "checkpoint.policy='highfreq'", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and {row["policy"] for row in rows} == {"highfreq"}
    assert all(0 <= row["effective_ratio"] <= 1 for row in rows)


def test_sweep_prints_one_row_per_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "gpt2-100b-p4d", *FAST, "--seeds", "1", "--workers", "1", "--no-progress",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.count("\n") >= 12 and "young-daly" in printed
    assert len(read_results(tmp_path).summary) == 12


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["simulate", "gpt2-100b-p4d", "--set", "cluster.machines=0"], "cluster.machines = 0"),
        (
            ["simulate", "gpt2-100b-p4d", "--set", "checkpoint.policy=sometimes"],
            "checkpoint.policy = 'sometimes'",
        ),
        (["simulate", "gpt2-100b-p4d", "--set", "checkpoint.replicas=3"], "checkpoint.placement"),
        (["simulate", "gpt2-100b-p4d", "--set", "cluster.gpus=8"], "cluster.gpus = 8: unknown field"),
        (["simulate", "gpt2-100b-p4d", "--seeds", "0"], "--seeds = 0"),
        (["simulate", "gpt2-100b-p4d", "--out", "x.csv"], "--out = 'x.csv'"),
        (["simulate", "no-such-preset"], "scenario = 'no-such-preset'"),
        (["sweep", "gpt2-100b-p4d", "--workers", "0"], "--workers = 0"),
        (["sweep", "gpt2-100b-p4d", "--set", "sweep={'cluster.machines' = [16, 0]}"], "cluster.machines = 0"),
        (["sweep", "gpt2-100b-p4d", "--workers", "many"], "invalid int value"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert named in err


def exit_code(argv: list[str]) -> int:
    """`main`'s return value, or argparse's exit status for a malformed flag."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_simulate_prints_without_pandas() -> None:
    # Printing a summary needs no DataFrame: pandas and pyarrow are most of a small run's CPU time. Nor
    # are the other subcommands built (realrun's flags come from its pydantic config).
    code = (
        "import sys; from gemini_ft.cli import main; "
        "main(['simulate', 'gpt2-100b-p4d', '--seeds', '2', '--set', 'run.duration_days=3']); "
        "print(sorted(m for m in ('pandas', 'pyarrow', 'scipy', 'gemini_ft.realrun.config', 'gemini_ft.cli.realrun')"
        " if m in sys.modules))"
    )
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert printed.strip().endswith("[]")
    header, row = printed.splitlines()[:2]
    assert header.split()[:5] == ["scenario", "policy", "placement", "machines", "seeds"]
    assert row.split()[:5] == ["gpt2-100b-p4d", "gemini", "group", "16", "2"]


def test_no_progress_changes_nothing_but_the_bar(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "gpt2-100b-p4d", *FAST, "--seeds", "3"]
    assert main(argv) == 0
    with_bar = capsys.readouterr().out
    assert main([*argv, "--no-progress"]) == 0
    quiet = capsys.readouterr()
    assert quiet.out == with_bar and quiet.err == ""
