"""Text renderings the subcommands print: fixed-width tables of summaries and results."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

SUMMARY_FORMATS = {
    "ratio": "{:.4f}".format,
    "ratio_ci95": "±{:.4f}".format,
    "wasted_h": "{:.1f}".format,
    "failures": "{:.1f}".format,
    "wasted_per_failure_min": "{:.1f}".format,
    "from_cpu_memory": "{:.0%}".format,
}


def format_summary(table: pd.DataFrame) -> str:
    """`sim.results.summary_table` as text: one row per group, the ratio with its interval."""
    formats = {column: f for column, f in SUMMARY_FORMATS.items() if column in table.columns}
    return table.to_string(formatters=formats, na_rep="-")


def to_json(value: Any) -> str:
    """Strict JSON (NaN and infinities become null) for `--json` outputs."""
    return json.dumps(_finite(value), indent=2)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
