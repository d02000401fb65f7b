"""`gemini-ft advise` from the command line: the printed recommendation, the candidates file that
carries it, and the frontier figure."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

import gemini_ft as g
from gemini_ft.analysis.catalog import figures_for
from gemini_ft.analysis.results_io import load_result_file
from gemini_ft.cli import main
from gemini_ft.common.results_io import read_table
from gemini_ft.scenarios.loader import from_toml_text

# A short run with a fixed in-memory overhead: the candidates skip the interleaving model, which is
# tested on its own, and the search stays a few seconds.
SMALL = ["--set", "run.duration_days=2", "--set", "checkpoint.iteration_overhead_fraction=0.01"]


def test_advise_prints_the_recommendation_and_writes_the_candidates_and_the_frontier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, plots = tmp_path / "advice.parquet", tmp_path / "plots"
    argv = ["advise", "gpt2-100b-p4d", *SMALL, "--workers", "1", "--out", str(out), "--plot", str(plots)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    table = read_table(out)
    advice = json.loads(table.metadata["advice"])
    best, runner_up = advice["best"], advice["runner_up"]
    assert f"  best     : {best['label']}\n" in printed
    assert f"  runner-up: {runner_up['label']}\n" in printed
    header = re.search(r"advice for gpt2-100b-p4d: (\d+) candidates, (\d+) runs", printed)
    assert header is not None and int(header.group(2)) == advice["runs"]
    # The recommendation is a row of the table, with the numbers printed for it.
    row = table.frame.set_index("label").loc[best["label"]]
    assert row["ratio"] == best["ratio"] and row["seeds"] == best["seeds"]
    assert f"effective ratio {best['ratio']:.4f}" in printed
    # Every configuration tried, each once, and the scenario that made them.
    assert table.frame["label"].is_unique and len(table.frame) == int(header.group(1))
    assert from_toml_text(table.scenario_toml).checkpoint.iteration_overhead_fraction == 0.01
    assert (plots / "advise-frontier.png").is_file() and str(out) in printed
    assert len(pd.read_csv(plots / "advise-frontier.csv")) == len(table.frame)  # the numbers behind it
    # `gemini-ft plot` draws the same figure from the file, starring the same recommendation.
    assert main(["plot", str(out), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "advise-frontier.png").is_file()
    result = load_result_file(out)
    assert result.kind == "advice"
    (spec,) = figures_for(result)
    stars = [c for ax in spec.draw().axes for c in ax.collections if c.get_label() == "recommended"]
    assert len(stars) == 2 and stars[0].get_offsets()[0][1] == row["ratio_common_seeds"]


def test_the_api_gives_the_advice_the_command_prints(capsys: pytest.CaptureFixture[str]) -> None:
    overrides = {"run.duration_days": 2, "checkpoint.iteration_overhead_fraction": 0.01}
    advice = g.advise("gpt2-100b-p4d", overrides)
    assert main(["advise", "gpt2-100b-p4d", *SMALL, "--workers", "1"]) == 0
    assert capsys.readouterr().out.strip() == advice.describe()
