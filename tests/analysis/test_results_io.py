"""Reading result files: sweep directories, simulate --out files, measurements, and bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gemini_ft.analysis.results_io import load_result_file
from gemini_ft.common.errors import UserError


def _write(df: pd.DataFrame, path: Path, scenario: str | None = None) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    if scenario is not None:
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), b"gemini_ft.scenario": scenario.encode()}
        )
    pq.write_table(table, path)


def test_sweep_directory(tmp_path: Path, summary: pd.DataFrame) -> None:
    _write(summary, tmp_path / "summary.parquet", scenario='name = "x"\n')
    _write(pd.DataFrame({"time_s": [1.0], "policy": ["gemini"]}), tmp_path / "failures.parquet")
    result = load_result_file(tmp_path)
    assert result.kind == "sim" and len(result.data) == len(summary)
    assert result.failures is not None and len(result.failures) == 1
    assert result.scenario_toml == 'name = "x"\n'


def test_simulate_out_file_with_failures_companion(tmp_path: Path, summary: pd.DataFrame) -> None:
    _write(summary, tmp_path / "run.parquet")
    _write(pd.DataFrame({"time_s": [1.0, 2.0]}), tmp_path / "run.failures.parquet")
    result = load_result_file(tmp_path / "run.parquet")
    assert result.kind == "sim" and result.failures is not None and len(result.failures) == 2
    with pytest.raises(UserError, match="this is the failures file; pass the summary"):
        load_result_file(tmp_path / "run.failures.parquet")


def test_measurements_and_probability_tables(tmp_path: Path, measurements: pd.DataFrame) -> None:
    (tmp_path / "run").mkdir()
    _write(measurements, tmp_path / "run" / "measurements.parquet")
    assert load_result_file(tmp_path / "run").kind == "measurements"
    probability = pd.DataFrame(
        {"strategy": ["group"], "machines": [16], "replicas": [2], "failures": [2], "probability": [0.9333]}
    )
    probability.to_csv(tmp_path / "p.csv", index=False)
    assert load_result_file(tmp_path / "p.csv").kind == "probability"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "RESULTS = '.*missing.parquet': no such file or directory"),
        (lambda p: p.write_text("not parquet"), "not a readable Parquet or CSV result file"),
        (lambda p: _write(pd.DataFrame({"a": [1]}), p), r"columns \(a\) are not a simulator summary"),
        (lambda p: _write(pd.DataFrame({"policy": [], "seed": [], "effective_ratio": []}), p), "has no rows"),
    ],
)
def test_bad_files_are_user_errors(tmp_path: Path, setup, message: str) -> None:
    path = tmp_path / "missing.parquet"
    setup(path)
    with pytest.raises(UserError, match=message):
        load_result_file(path)


def test_directory_without_results(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"must hold summary\.parquet"):
        load_result_file(tmp_path)
