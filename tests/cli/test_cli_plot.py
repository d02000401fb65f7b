"""`gemini-ft plot` end to end through `gemini_ft.cli.main`, and its one-line errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from analysis_data import make_summary

from gemini_ft.cli import main


def test_plot_sim_summary_writes_png_pdf_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_summary(machines=(16, 64), seeds=2).to_parquet(tmp_path / "run.parquet")
    assert main(["plot", str(tmp_path / "run.parquet"), "--out", str(tmp_path / "fig")]) == 0
    printed = capsys.readouterr().out.split()
    stems = [
        "fig10_wasted_time",
        "fig15a_effective_ratio_vs_failure_rate",
        "fig15b_effective_ratio_vs_machines",
    ]
    expected = [str(tmp_path / "fig" / f"{s}.{ext}") for s in stems for ext in ("png", "pdf", "csv")]
    assert printed == expected
    for path in map(Path, expected):
        assert path.stat().st_size > 1000 or path.suffix == ".csv"
    assert Path(expected[0]).read_bytes()[:4] == b"\x89PNG" and Path(expected[1]).read_bytes()[:4] == b"%PDF"


def test_plot_measurements(
    tmp_path: Path, measurements: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    measurements.to_parquet(tmp_path / "measurements.parquet")
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "fig")]) == 0
    assert capsys.readouterr().out.split()[0].endswith("realrun_measurements.png")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "RESULTS = '{path}': no such file or directory"),
        (
            pd.DataFrame({"policy": ["gemini"], "wasted_s": [1.0]}),
            "RESULTS = '{path}': columns (policy, wasted_s) are not",
        ),
        (
            pd.DataFrame(
                {
                    "event": ["snapshot"],
                    "bytes": [1.0],
                    "duration_s": [0.1],
                    "source": ["local"],
                    "policy": ["x"],
                    "seed": [0],
                    "effective_ratio": [1.0],
                    "machines": [1],
                }
            ).iloc[:0],
            "RESULTS = '{path}': has no rows",
        ),
    ],
)
def test_plot_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content, message
) -> None:
    path = tmp_path / "results.parquet"
    if content is not None:
        content.to_parquet(path)
    assert main(["plot", str(path), "--out", str(tmp_path / "fig")]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"gemini-ft: error: {message.format(path=path)}"
        + err[len(f"gemini-ft: error: {message.format(path=path)}") :]
    )
    assert err.startswith(f"gemini-ft: error: {message.format(path=path)}")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_plot_summary_missing_needed_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_summary().drop(columns=["machines"]).to_parquet(tmp_path / "run.parquet")
    assert main(["plot", str(tmp_path / "run.parquet"), "--out", str(tmp_path / "fig")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gemini-ft: error: summary columns = 'machines': missing; needed: ")
    assert err.count("\n") == 1
