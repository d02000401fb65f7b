"""Text renderings the subcommands print: fixed-width tables of summaries and results."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    """`gemini_ft.sim.results.summary_table` as text: one row per group, the ratio with its interval."""
    by = [name for name in table.index.names if name is not None]
    return format_summary_rows(table.reset_index().to_dict("records"), by)


def format_summary_rows(rows: Sequence[Mapping[str, Any]], by: Sequence[str]) -> str:
    """Rows of `gemini_ft.sim.seed_means.group_means` (the group's `by` values, then the table's columns) as a
    fixed-width table: the group columns left-aligned, the numbers right-aligned, NaN as "-"."""
    from gemini_ft.sim.seed_means import COLUMNS

    columns = [*by, *COLUMNS]
    cells = [[_cell(column, row[column], column in by) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    grouped = len(by)

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            value.ljust(width) if i < grouped else value.rjust(width)
            for i, (value, width) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    return "\n".join([line(columns), *(line(values) for values in cells)])


def _cell(column: str, value: Any, group: bool) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if column in SUMMARY_FORMATS:
        return SUMMARY_FORMATS[column](value)
    if isinstance(value, float):  # a swept value as written (0.015), an interval bound to 6 decimals
        return f"{value:g}" if group else f"{value:.6f}"
    return str(value)


def to_json(value: Any) -> str:
    """Strict JSON (NaN and infinities become null) for `--json` outputs."""
    import json  # only for --json: the printed table, the common case, does without it

    return json.dumps(_finite(value), indent=2)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
