"""Table-driven: at least 150 bad inputs across every subcommand. Each gets exit status 2, exactly one
line on stderr naming what was wrong, nothing on stdout, and never a traceback.

The scenario cases are generated from the schema itself (every numeric field gets inf, nan, a
boolean and, where a bound applies, a value past it), so a new field is covered the day it lands.
"""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from annotated_types import Ge, Gt, Le, Lt

from gemini_ft.cli import _name_flag, main
from gemini_ft.common.errors import UserError
from gemini_ft.scenarios.schema import SECTION_MODELS

SCENARIO_COMMANDS = (["simulate", "gpt2-100b-p4d"], ["sweep", "gpt2-100b-p4d", "--no-progress"],
                     ["interleave", "gpt2-40b-p3dn"], ["scenarios", "show", "opt-175b"],
                     ["advise", "gpt2-100b-p4d"])  # fmt: skip


def _numeric(annotation: object) -> type | None:
    for kind in (int, float):
        if annotation is kind or kind in typing.get_args(annotation):
            return kind
    return None


def _past_bound(info) -> str | None:
    for item in info.metadata:
        if isinstance(item, Ge | Gt):
            bound = item.ge if isinstance(item, Ge) else item.gt
            return str(bound - 1)
        if isinstance(item, Le | Lt):
            bound = item.le if isinstance(item, Le) else item.lt
            return str(bound + 1) if isinstance(bound, int) else str(bound * 2 + 1)
    return None


_REAL_RUN = str(
    Path(__file__).resolve().parents[1] / "calibration" / "real_runs" / "fit-5m" / "measurements.parquet"
)
# 3 × 200 × 200 = 120,000 points: about 1.1 GiB as scenarios, past the sweep's budget.
_BIG_GRID = (
    '{"checkpoint.replicas"=[1, 2, 4], "cluster.machines"=['
    + ", ".join(str(16 + i) for i in range(200))
    + "],"
    ' "failures.rate_per_machine_per_day"=[' + ", ".join(f"{0.001 * (i + 1):.3f}" for i in range(200)) + "]}"
)


def _scenario_cases() -> list[tuple[list[str], str]]:
    cases = []
    index = 0
    for section, model in SECTION_MODELS.items():
        for name, info in model.model_fields.items():
            kind = _numeric(info.annotation)
            if kind is None:
                continue
            path = f"{section}.{name}"
            values = ["inf", "nan", "true"] if kind is float else ["inf", "true", "1.5"]
            past = _past_bound(info)
            if past is not None:
                values.append(past)
            for value in values:
                command = SCENARIO_COMMANDS[index % len(SCENARIO_COMMANDS)]
                index += 1
                cases.append(([*command, "--set", f"{path}={value}"], path))
    cases += [
        (["simulate", "gpt2-100b-p4d", "--set", "cluster.nonsense=1"], "cluster.nonsense"),
        (["simulate", "gpt2-100b-p4d", "--set", "nosection.x=1"], "nosection.x"),
        (["simulate", "gpt2-100b-p4d", "--set", "cluster.machines"], "--set"),
        (["simulate", "gpt2-100b-p4d", "--set", "checkpoint.policy=fast"], "checkpoint.policy"),
        (["simulate", "gpt2-100b-p4d", "--set", "checkpoint.placement=star"], "checkpoint.placement"),
        (["simulate", "gpt2-100b-p4d", "--set", "failures.distribution=gamma"], "failures.distribution"),
        (["simulate", "gpt2-100b-p4d", "--set", "checkpoint.replicas=17"], "checkpoint.replicas"),
        (["simulate", "gpt2-100b-p4d", "--set", "checkpoint.replicas=300"], "checkpoint.replicas"),
        (["sweep", "gpt2-100b-p4d", "--set", 'sweep={"cluster.machines"=[]}'], "sweep"),
        (["sweep", "gpt2-100b-p4d", "--set", 'sweep={"cluster.machines"=[1, 2]}'], "sweep point"),
        (["sweep", "gpt2-100b-p4d", "--set", "run.max_sweep_points=2"], "run.max_sweep_points"),
        (["simulate", "no-such-preset"], "scenario"),
        (["simulate", "x" * 5000], "scenario"),
        (["simulate", "missing.toml"], "scenario"),
        (["simulate", "gpt2-100b-p4d", "--seeds", "0"], "--seeds"),
        (["simulate", "gpt2-100b-p4d", "--seeds", "many"], "--seeds"),
        (["simulate", "gpt2-100b-p4d", "--out", "run.csv"], "--out"),
        (["simulate", "gpt2-100b-p4d", "--target-ci", "-1"], "--target-ci"),
        (["simulate", "gpt2-100b-p4d", "--target-ci", "nan"], "--target-ci"),
        (["sweep", "gpt2-100b-p4d", "--workers", "0"], "--workers"),
        (["sweep", "gpt2-100b-p4d", "--dask", "not an address", "--no-progress"], "--dask"),
        (["sweep", "gpt2-100b-p4d", "--track", "mlflow"], "--track"),
        (["sweep", "gpt2-100b-p4d", "--track", "tensorboard", "--no-progress"], "--track"),
        (["sweep", "gpt2-100b-p4d", "--track", "tensorboard", "--track-dir", "/proc/x"], "--track-dir"),
        (["sweep", "gpt2-100b-p4d", "--track-dir", "tracked"], "--track"),
        (
            ["sweep", "gpt2-100b-p4d", "--track", "tensorboard", "--track-online", "--out", "o"],
            "--track-online",
        ),
        (["advise", "gpt2-100b-p4d", "--workers", "0"], "--workers"),
        (["advise", "gpt2-100b-p4d", "--out", "advice.csv"], "--out"),
        (["advise", "gpt2-100b-p4d", "--seed", "-1"], "--seed"),
        (["interleave", "gpt2-40b-p3dn", "--scheme", "fast"], "--scheme"),
        (["scenarios", "validate", "missing.toml"], "scenario"),
        (["scenarios", "frobnicate"], "ACTION"),
        (["placement", "-N", "4", "-m", "5"], "replicas"),
        (["placement", "-N", "0", "-m", "1"], "machines"),
        (["placement", "-N", "10", "-m", "2", "-k", "11"], "failures"),
        (["placement", "-N", "10", "-m", "2", "--strategy", "star"], "--strategy"),
        (["placement", "-N", "10", "-m", "3", "--strategy", "group"], "group"),
        (["placement", "-N", "10", "-m", "2", "--method", "guess"], "--method"),
        (["placement", "-N", "10", "-m", "2", "--samples", "0", "--method", "montecarlo"], "samples"),
        (["placement", "-N", "10", "-m", "2", "--seed", "-1"], "--seed"),
        (["placement", "-N", "1000000000000", "-m", "2", "--show"], "--machines"),
        (["placement", "-N", "1000000000000", "-m", "2", "--strategy", "random"], "--machines"),
        (["placement", "-N", "ten", "-m", "2"], "--machines"),
        (["realrun", "--machines", "0"], "--machines"),
        (["realrun", "--machines", "4", "--replicas", "3"], "--placement"),
        (["realrun", "--placement", "star"], "--placement"),
        (["realrun", "--fail", "random:count=abc"], "--fail"),
        (["realrun", "--fail", "random:count=1:seed=-1"], "--fail"),
        (["realrun", "--fail", "random:count=1:seed=x"], "--fail"),
        (["realrun", "--fail", "sw@step=x:rank=0"], "--fail"),
        (["realrun", "--fail", "kill-everything"], "--fail"),
        (["realrun", "--chunk-mib", "1e-9"], "--chunk-mib"),
        (["realrun", "--chunk-mib", "inf"], "--chunk-mib"),
        (["realrun", "--time-limit", "-1"], "--time-limit"),
        (["realrun", "--time-limit", "nan"], "--time-limit"),
        (["realrun", "--model-size", "7q"], "--model-size"),
        (["realrun", "--link-gbps", "10"], "--link-gbps"),
        (["realrun", "--steps", "0"], "--steps"),
        (["realrun", "--device", "tpu"], "--device"),
        (["realrun", "--track", "mlflow"], "--track"),
        (["realrun", "--track", "tensorboard", "--track-dir", "/proc/x"], "--track-dir"),
        (["realrun", "--fail", "sw@step=1:step=2:rank=0"], "--fail"),
        (["realrun", "--fail", "mem@step=2:machine=0:shard=0:how=flip"], "--fail"),
        (
            ["realrun", "--fail", "hw@step=2:machine=0", "--fail", "mem@step=2:machine=0:shard=0:how=flip"],
            "--fail",
        ),
        (["realrun", "--lr", "nan"], "--lr"),
        (["calibrate", "missing.parquet", "--out", "cal.toml"], "MEASUREMENTS"),
        (["calibrate", "notes.parquet", "--out", "cal.toml"], "MEASUREMENTS"),
        (["validate", "gpt2-100b-p4d", "missing.parquet"], "MEASUREMENTS"),
        (["plot", "missing.parquet", "--out", "figs"], "RESULTS"),
        (["plot", "notes.parquet", "--out", "figs"], "RESULTS"),
        (["report", "--out", "rep", "--workers", "0"], "--workers"),
        (["report", "--out", "rep", "--measurements", "missing.parquet"], "--measurements"),
        (["calibrate", "notes.parquet", "--base", "nope", "--out", "cal.toml"], "--base"),
        (["calibrate", _REAL_RUN, _REAL_RUN, "--out", "cal.toml"], "again: give each run once"),
        # Strings are no numbers or booleans, however they read.
        (["simulate", "gpt2-100b-p4d", "--set", 'cluster.machines="16"'], "cluster.machines"),
        (
            ["simulate", "gpt2-100b-p4d", "--set", 'failures.strike_during_recovery="yes"'],
            "failures.strike_during_recovery",
        ),
        (
            ["simulate", "gpt2-100b-p4d", "--set", 'failures.rate_per_machine_per_day="0.1"'],
            "failures.rate_per_machine_per_day",
        ),
        (["simulate", "evil.toml"], "cluster.evil\\x1b[31mred\\nline2"),  # escaped: still one line
        (
            [
                "simulate",
                "gpt2-100b-p4d",
                "--set",
                'failures.distribution="trace"',
                "--set",
                'failures.trace_file="true.csv"',
            ],
            "failures.trace_file row 2 column time_s",
        ),
        # What the fields allow one by one but no run could hold or finish.
        (
            [
                "simulate",
                "gpt2-100b-p4d",
                "--set",
                'failures.distribution="weibull"',
                "--set",
                "failures.weibull_shape=0.01",
            ],
            "failures.weibull_shape",
        ),
        (
            [
                "simulate",
                "gpt2-100b-p4d",
                "--set",
                'failures.distribution="weibull"',
                "--set",
                "failures.weibull_shape=1e-6",
            ],
            "failures.weibull_shape",
        ),
        (
            [
                "simulate",
                "gpt2-100b-p4d",
                "--set",
                "operations.enabled=true",
                "--set",
                "cluster.standby_machines=100000000",
            ],
            "cluster.standby_machines",
        ),
        (
            [
                "simulate",
                "gpt2-100b-p4d",
                "--set",
                "operations.enabled=true",
                "--set",
                "cluster.standby_machines=1000000000000",
            ],
            "cluster.standby_machines",
        ),
        (["interleave", "gpt2-40b-p3dn", "--set", "interleave.chunk_mib=0.001"], "interleave.chunk_mib"),
        (["simulate", "gpt2-100b-p4d", "--set", "model.layers=100000000"], "model.layers"),
        (
            [
                "sweep",
                "gpt2-100b-p4d",
                "--set",
                "run.max_sweep_points=100000000",
                "--set",
                "sweep=" + _BIG_GRID,
            ],
            "sweep",
        ),
        (
            [
                "placement",
                "-N",
                "1000",
                "-m",
                "2",
                "--method",
                "montecarlo",
                "--samples",
                "1000000000000",
                "-k",
                "3",
            ],
            "--samples",
        ),
    ]
    return cases


CASES = _scenario_cases()


def test_there_are_at_least_150_cases():
    assert len(CASES) >= 150
    assert {argv[0] for argv, _ in CASES} >= {
        "simulate", "sweep", "advise", "interleave", "scenarios", "placement", "realrun", "calibrate",
        "validate", "plot", "report",
    }  # fmt: skip


@pytest.mark.parametrize(("argv", "names"), CASES, ids=[" ".join(a)[:80] for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(argv, names, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("notes.parquet").write_text("not parquet")
    Path("evil.toml").write_text(
        '[cluster]\n"evil\\u001b[31mred\\nline2" = 1\n'
    )  # a key that would steer the terminal
    Path("true.csv").write_text("time_s,machine,type\nTrue,0,software\n")
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("gemini-ft: error: ") and err.count("\n") == 1, err
    assert names in err and "Traceback" not in err


def test_a_flag_already_named_in_an_explanation_is_left_as_it_is() -> None:
    flags = {"failures": "--fail", "steps": "--steps", "machines": "--machines"}
    named = UserError("failures", "x", "step must be between 1 and --steps = 5")
    assert _name_flag(named, flags) == "--fail = 'x': step must be between 1 and --steps = 5"
    fields = UserError("failures", "x", "needs steps = 5 and machines (4)")
    assert _name_flag(fields, flags) == "--fail = 'x': needs --steps = 5 and --machines (4)"
