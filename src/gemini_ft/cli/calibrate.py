"""`gemini-ft calibrate`: fit the simulator's parameters from real-run measurements into a scenario TOML."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from gemini_ft.cli.commands import COMMANDS
from gemini_ft.cli.options import add_set_argument, check_output
from gemini_ft.scenarios import preset_names

DEFAULT_BASE = "gpt2-100b-p4d"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("calibrate", help=COMMANDS["calibrate"])
    parser.add_argument("measurements", nargs="+", metavar="MEASUREMENTS", help="measurements.parquet files")
    parser.add_argument(
        "--base",
        default=DEFAULT_BASE,
        metavar="NAME|PATH",
        help=f"scenario to calibrate: a preset ({', '.join(preset_names())}) or a TOML file",
    )
    add_set_argument(parser)
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE.toml", help="where to write the calibrated scenario"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from gemini_ft.calibration.fit import calibrate
    from gemini_ft.calibration.measurements import load_runs
    from gemini_ft.calibration.overlay import calibrated_scenario, overlay_toml
    from gemini_ft.common.errors import about
    from gemini_ft.scenarios.loader import load_scenario

    check_output("out", args.out, kind="file")
    with about("base", instead_of="scenario"):
        base = load_scenario(args.base, args.overrides)
    runs = load_runs(args.measurements)
    calibration = calibrate(runs, base)
    scenario = calibrated_scenario(calibration, base)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(overlay_toml(scenario, calibration))
    print(format_parameters(calibration.table()))
    print(f"calibrated scenario: {args.out}")
    return 0


def format_parameters(table: pd.DataFrame) -> str:
    """The fitted parameters, one per line: value, 95% CI, points, how."""
    width = max([len("parameter"), *map(len, table["parameter"])])
    lines = [f"{'parameter':<{width}} {'value':>14} {'95% CI':>27} {'n':>5}  how"]
    for row in table.itertuples(index=False):
        value = f"{row.value:.6g}" if isinstance(row.value, float) else str(row.value)
        ci = f"[{_num(row.ci_low)}, {_num(row.ci_high)}]" if not math.isnan(row.ci_low) else "-"
        unit = f" {row.unit}" if row.unit and row.value is not None else ""
        lines.append(f"{row.parameter:<{width}} {value + unit:>14} {ci:>27} {row.n:>5}  {row.how}")
    return "\n".join(lines)


def _num(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else ("inf" if value > 0 else "nan")
