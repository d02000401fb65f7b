"""Every subcommand's --help shows each option's default and allowed choices; output into a closed pipe
ends quietly; output paths are checked before any work starts."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from gemini_ft.cli import COMMANDS, build_parser, main


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_subcommand_is_registered():
    assert set(_subcommands()) == set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_defaults_and_choices(name, capsys):
    parser = _subcommands()[name]
    parsers = [parser]
    for action in parser._actions:  # `scenarios` has actions of its own
        if isinstance(action, argparse._SubParsersAction):
            parsers += list(action.choices.values())
    for sub in parsers:
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            if not action.option_strings or argparse.SUPPRESS in (action.help, action.default):
                continue
            default = action.default
            if isinstance(default, int | float | str | Path) and not isinstance(default, bool):
                shown = f"{default:g}" if isinstance(default, float) else str(default)
                assert f"(default: {shown})" in text, f"{sub.prog} {action.option_strings[-1]}"
            if action.choices:
                assert all(str(choice) in text for choice in action.choices), f"{sub.prog} {action.dest}"


def test_positional_scenario_lists_the_presets(capsys):
    text = _subcommands()["simulate"].format_help()
    assert "gpt2-100b-p4d" in " ".join(text.split())


def test_json_into_a_closed_pipe_is_quiet(tmp_path):
    # `gemini-ft simulate ... --json | head -1`: the reader leaves early; no BrokenPipe traceback.
    command = (
        f"{sys.executable} -m gemini_ft simulate gpt2-100b-p4d --set run.duration_days=1 --seeds 30 --json"
        " | head -1"
    )
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True)
    assert result.stdout.strip() == "["
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["simulate", "gpt2-100b-p4d", "--out", "DIR.parquet"], "is an existing directory"),
        (["sweep", "gpt2-100b-p4d", "--out", "FILE"], "exists and is not a directory"),
        (["sweep", "gpt2-100b-p4d", "--out", "/proc/gemini"], "virtual file system"),
        (["sweep", "gpt2-100b-p4d", "--out", "x" * 300], "longer than 255 bytes"),
        (["calibrate", "m.parquet", "--out", "DIR.parquet"], "is an existing directory"),
        (["realrun", "--out", "FILE"], "exists and is not a directory"),
        (["plot", "r.parquet", "--out", "FILE/under"], "is a file, not a directory"),
    ],
)
def test_output_paths_are_checked_before_work(tmp_path, monkeypatch, capsys, argv, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "DIR.parquet").mkdir()
    (tmp_path / "FILE").write_text("not a directory")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gemini-ft: error: --out = ") and needle in err and err.count("\n") == 1
    assert not list(tmp_path.glob("*.failures.parquet"))  # nothing half-written beside the refused path


def test_set_on_a_swept_field_narrows_the_sweep(capsys):
    argv = ["sweep", "gpt2-100b-p4d", "--set", "checkpoint.policy=strawman", "--set", "run.duration_days=2"]
    assert main([*argv, "--seeds", "1", "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "strawman" not in out.split("\n")[0] and out.count("\n") == 4  # one header line, 3 rates
    assert "gemini" not in out and "highfreq" not in out


def test_version_is_the_installed_distributions(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"gemini-ft {version('gemini-ft')}\n"


def test_the_dask_flag_says_what_it_trusts():
    text = " ".join(_subcommands()["sweep"].format_help().split())
    assert "unpickles what that address sends" in text
