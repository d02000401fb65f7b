"""`gemini-ft placement`: the table, JSON rows, --show, and one-line errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gemini_ft.cli import main
from gemini_ft.placement.layout import Placement
from gemini_ft.placement.sampling import enumerate_probability


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["placement", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_has_a_row_per_strategy_and_a_column_per_k(capsys):
    code, out, err = _run(capsys, "--machines", "16", "--replicas", "2")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[-7:] == ["1", "2", "3", "4", "5", "6", "method"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert set(rows) == {"group", "ring", "random", "corollary1-bound"}
    assert rows["group"][1] == "0.933333" and rows["ring"][1] == "0.866667"
    assert rows["group"][-1] == "exact"


def test_closed_forms_at_100000_machines_show_their_distance_from_1(capsys):
    code, out, _ = _run(capsys, "-N", "100000", "-m", "4", "--strategy", "group", "ring", "-k", "3", "16")
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert rows["group"][:2] == ["1.000000", "1-1.09e-11"]  # k < m: nothing can be lost
    assert rows["ring"][1].startswith("1-4.")
    assert rows["corollary1-bound"][0] == "1.000000"


def test_json_rows_have_the_documented_keys(capsys):
    code, out, _ = _run(
        capsys, "-N", "17", "-m", "2", "--strategy", "mixed", "ring", "--failures", "2", "3", "--json"
    )
    assert code == 0
    rows = json.loads(out)
    assert [(r["strategy"], r["failures"]) for r in rows] == [
        ("mixed", 2),
        ("mixed", 3),
        ("ring", 2),
        ("ring", 3),
    ]
    for row in rows:
        assert set(row) == {
            "strategy",
            "machines",
            "replicas",
            "failures",
            "probability",
            "method",
            "ci_low",
            "ci_high",
        }
        assert row["machines"] == 17 and row["replicas"] == 2 and row["method"] == "exact"
        assert row["ci_low"] is None and row["ci_high"] is None
    assert rows[2]["probability"] == pytest.approx(1 - 17 / 136)  # ring: 17 adjacent pairs of C(17, 2)


def test_montecarlo_json_carries_an_interval_and_is_seeded(capsys):
    argv = (
        "-N",
        "12",
        "-m",
        "3",
        "--strategy",
        "ring",
        "-k",
        "4",
        "--method",
        "montecarlo",
        "--samples",
        "4000",
    )
    _, first, _ = _run(capsys, *argv, "--json", "--seed", "3")
    _, again, _ = _run(capsys, *argv, "--json", "--seed", "3")
    row = json.loads(first)[0]
    assert first == again
    assert row["method"] == "montecarlo" and row["ci_low"] <= row["probability"] <= row["ci_high"]
    # Lost: a window of 3 plus any of 9 others (12 × 9), less the 12 runs of 4 counted twice; of C(12, 4).
    assert row["ci_low"] <= 1 - (12 * 9 - 12) / 495 <= row["ci_high"]


def test_domain_failures_are_enumerated_when_cheap_and_sampled_otherwise(capsys):
    # Without --method, whole-domain failures are enumerated when that is cheap (4 domains here) ...
    argv = ["-N", "16", "-m", "2", "--domain-size", "4", "--failure-mode", "domains"]
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert rows["domain"][0] == "1.000000" and rows["group"][0] == "0.000000"
    assert rows["domain"][-1] == "enumerate"
    assert "corollary1-bound" not in rows
    # ... and sampled when not (2,000 domains of 8: C(2000, 3) failure sets).
    argv = ["-N", "16000", "-m", "2", "--domain-size", "8", "--failure-mode", "domains", "-k", "3"]
    _, out, _ = _run(capsys, *argv, "--strategy", "ring", "--samples", "500", "--json")
    assert json.loads(out)[0]["method"] == "montecarlo"


def test_show_prints_each_machines_holders(capsys):
    code, out, _ = _run(capsys, "-N", "5", "-m", "2", "--show", "--strategy", "ring")
    assert code == 0
    assert out.splitlines() == [
        "ring (N = 5, m = 2):",
        "  0: 0 1",
        "  1: 1 2",
        "  2: 2 3",
        "  3: 3 4",
        "  4: 4 0",
    ]


def test_show_prints_the_random_placement_the_table_evaluates(capsys):
    _, shown, _ = _run(capsys, "-N", "9", "-m", "3", "--show", "--strategy", "random", "--seed", "5")
    holders = np.array([[int(h) for h in line.split(":")[1].split()] for line in shown.splitlines()[1:]])
    placement = Placement("random", 9, 3, holders)
    _, out, _ = _run(
        capsys, "-N", "9", "-m", "3", "--strategy", "random", "--seed", "5", "-k", "4", "5", "--json"
    )
    for row in json.loads(out):
        assert row["probability"] == float(enumerate_probability(placement, row["failures"]))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["-N", "4", "-m", "5"], "replicas = 5"),
        (["-N", "4", "-m", "0"], "replicas = 0"),
        (["-N", "10", "-m", "2", "-k", "11"], "failures = 11"),
        (["-N", "10", "-m", "2", "--strategy", "star"], "strategy = 'star'"),
        (["-N", "10", "-m", "3", "--strategy", "group"], "strategy = 'group'"),
        (["-N", "10", "-m", "2", "--method", "guess"], "--method = 'guess'"),
        (["-N", "10", "-m", "2", "--failure-mode", "racks"], "--failure-mode = 'racks'"),
        (["-N", "10", "-m", "2", "--failure-mode", "domains"], "--failure-mode = 'domains'"),
        (
            ["-N", "10", "-m", "2", "--failure-mode", "domains", "--domain-size", "2", "--method", "exact"],
            "method",
        ),
        (
            ["-N", "10", "-m", "2", "--failure-mode", "domains", "--domain-size", "4", "-k", "4"],
            "failures = 4",
        ),
        (["-N", "40", "-m", "2", "-k", "20", "--method", "enumerate"], "use --method exact or montecarlo"),
        (["-N", "3000", "-m", "2", "-k", "6", "--strategy", "random"], "use --method montecarlo"),
        (["-N", "10", "-m", "2", "--method", "montecarlo", "--samples", "0"], "samples = 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle):
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("gemini-ft: error: ")
    assert needle in err
    assert "Traceback" not in err
