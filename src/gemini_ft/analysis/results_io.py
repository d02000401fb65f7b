"""Read a result file and say what it holds: a simulator run/sweep, real-runner measurements, or a
recovery-probability table, or the candidates of an `advise --out` file.

Simulator results are a sweep directory (`summary.parquet` + `failures.parquet`) or a
`simulate --out X.parquet` file (failures in `X.failures.parquet`); measurements are
`measurements.parquet` (or a directory holding it). Parquet or CSV; anything else is a UserError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from gemini_ft.analysis.tables import MEASUREMENT_COLUMNS, PROBABILITY_COLUMNS
from gemini_ft.common.errors import UserError
from gemini_ft.common.results_io import read_table

Kind = Literal["sim", "measurements", "probability", "advice"]
ADVICE_COLUMNS = ("label", "spare_machines", "cpu_memory_gib", "ratio_common_seeds", "frontier")
SUMMARY_KEY_COLUMNS = ("policy", "seed", "effective_ratio")
_KINDS_HELP = (
    "a simulator summary (columns "
    + ", ".join(SUMMARY_KEY_COLUMNS)
    + ", ...), real-runner measurements ("
    + ", ".join(MEASUREMENT_COLUMNS)
    + "), a recovery-probability table ("
    + ", ".join(PROBABILITY_COLUMNS)
    + ") or advise's candidates ("
    + ", ".join(ADVICE_COLUMNS)
    + ")"
)


@dataclass(frozen=True)
class ResultFile:
    """What one result file holds; `scenario_toml` is the resolved scenario stored with it, if any."""

    path: Path
    kind: Kind
    data: pd.DataFrame
    failures: pd.DataFrame | None = None
    scenario_toml: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    """The file's `gemini_ft.*` metadata (keys without the prefix), e.g. advise's recommendation."""


def load_result_file(path: str | Path) -> ResultFile:
    """Read `path` (file or directory) and classify it by its columns."""
    path = Path(path)
    if not path.exists():
        raise UserError("RESULTS", str(path), "no such file or directory")
    if path.is_dir():
        return _load_directory(path)
    if path.name.endswith(".failures.parquet"):
        summary = path.with_name(path.name.removesuffix(".failures.parquet") + ".parquet")
        raise UserError("RESULTS", str(path), f"this is the failures file; pass the summary {summary}")
    table = read_table(path)
    data = table.frame
    kind = _classify(path, data)
    failures = None
    if kind == "sim":
        companion = path.with_name(path.stem + ".failures.parquet")
        if companion.is_file():
            failures, _ = _read_table(companion)
    return ResultFile(path, kind, data, failures, table.scenario_toml, table.metadata)


def _load_directory(path: Path) -> ResultFile:
    if (path / "summary.parquet").is_file():
        data, scenario = _read_table(path / "summary.parquet")
        _classify(path / "summary.parquet", data, expected="sim")
        failures = None
        if (path / "failures.parquet").is_file():
            failures, _ = _read_table(path / "failures.parquet")
        return ResultFile(path, "sim", data, failures, scenario)
    if (path / "measurements.parquet").is_file():
        return load_result_file(path / "measurements.parquet")
    raise UserError(
        "RESULTS", str(path), "a directory must hold summary.parquet (a sweep) or measurements.parquet"
    )


def _read_table(path: Path) -> tuple[pd.DataFrame, str | None]:
    """The table and the scenario TOML stored with it (Parquet only); never unpickles anything."""
    table = read_table(path)
    return table.frame, table.scenario_toml


def _classify(path: Path, data: pd.DataFrame, expected: Kind | None = None) -> Kind:
    columns = set(data.columns)
    kinds: dict[Kind, tuple[str, ...]] = {
        "measurements": MEASUREMENT_COLUMNS,
        "probability": PROBABILITY_COLUMNS,
        "sim": SUMMARY_KEY_COLUMNS,
        "advice": ADVICE_COLUMNS,
    }
    for kind, needed in kinds.items():
        if (expected is None or kind == expected) and columns.issuperset(needed):
            if data.empty:
                raise UserError("RESULTS", str(path), "has no rows")
            return kind
    shown = ", ".join(sorted(columns)[:8]) + (", ..." if len(columns) > 8 else "")
    raise UserError("RESULTS", str(path), f"columns ({shown}) are not {_KINDS_HELP}")
