"""`gemini-ft calibrate` (fit a scenario from real-run measurements) and `gemini-ft validate`
(simulator predictions vs held-out measurements, with a table, a CSV and the parity plot)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from scenarios.cli import add_set_argument
from scenarios.schema import Scenario

DEFAULT_BASE = "gpt2-100b-p4d"


def register(subparsers: argparse._SubParsersAction) -> None:
    cal = subparsers.add_parser(
        "calibrate", help="fit simulator parameters from realrun measurements into a scenario TOML"
    )
    cal.add_argument("measurements", nargs="+", metavar="MEASUREMENTS", help="measurements.parquet files")
    cal.add_argument(
        "--base",
        default=DEFAULT_BASE,
        metavar="SCENARIO",
        help=f"scenario to calibrate (default {DEFAULT_BASE})",
    )
    add_set_argument(cal)
    cal.add_argument("--out", type=Path, required=True, help="where to write the calibrated scenario TOML")
    cal.set_defaults(func=_calibrate)

    val = subparsers.add_parser(
        "validate", help="compare a calibrated scenario's predictions with held-out measurements"
    )
    val.add_argument("scenario", metavar="SCENARIO", help="calibrated scenario TOML (or a preset)")
    val.add_argument("measurements", nargs="+", metavar="MEASUREMENTS", help="held-out measurements.parquet")
    add_set_argument(val)
    val.add_argument("--out", type=Path, help="directory for validation.csv and the parity plot (PNG, PDF)")
    val.set_defaults(func=_validate)


def _calibrate(args: argparse.Namespace) -> int:
    from calibration.fit import calibrate
    from calibration.measurements import load_runs
    from calibration.overlay import calibrated_scenario, overlay_toml
    from scenarios.loader import load_scenario

    base = load_scenario(args.base, args.overrides)
    runs = load_runs(args.measurements)
    calibration = calibrate(runs, base)
    scenario = calibrated_scenario(calibration, base)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(overlay_toml(scenario, calibration))
    print(format_parameters(calibration.table()))
    print(f"calibrated scenario: {args.out}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from calibration.measurements import load_runs
    from calibration.validate import compare
    from scenarios.loader import load_scenario

    scenario = load_scenario(args.scenario, args.overrides)
    runs = load_runs(args.measurements)
    table = compare(scenario, runs)
    print(format_validation(table))
    print(format_fixed_costs(scenario))
    if args.out is not None:
        from analysis.calibration_figures import plot_parity
        from analysis.style import save_figure

        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "validation.csv", index=False)
        paths = save_figure(plot_parity(table), args.out, "parity")
        print(f"wrote {args.out / 'validation.csv'}, {', '.join(str(p) for p in paths)}")
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


def format_fixed_costs(scenario: Scenario) -> str:
    """The per-transfer fixed costs and bandwidths behind the transfer predictions, in one line."""
    from sim.costs import replication_bandwidth_gbps

    ckpt, cluster, interleave = scenario.checkpoint, scenario.cluster, scenario.interleave
    replication = "NIC" if ckpt.replication_gbps is None else "checkpoint.replication_gbps"
    return (
        f"transfers: rounds {ckpt.transfer_latency_s:.4g} s + bytes / {replication_bandwidth_gbps(scenario):.4g}"
        f" Gbps ({replication}); peer fetches {ckpt.transfer_latency_s:.4g} s + bytes /"
        f" {cluster.nic_bandwidth_gbps:.4g} Gbps (NIC); fixed cost checkpoint.transfer_latency_s per round or"
        f" fetch; local {ckpt.local_retrieval_latency_s:.4g} s + bytes / {interleave.gpu_to_cpu_gbps:.4g} Gbps"
        " (checkpoint.local_retrieval_latency_s)"
    )


def format_validation(table: pd.DataFrame) -> str:
    lines = [
        f"{'run':<16} {'quantity':<30} {'n':>4} {'measured s':>12} {'predicted s':>12} {'rel. error':>10}"
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"{row.run:<16} {row.quantity:<30} {row.n:>4} {row.measured_s:>12.4g} {row.predicted_s:>12.4g}"
            f" {row.rel_error:>+10.1%}"
        )
    return "\n".join(lines)


def _num(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else ("inf" if value > 0 else "nan")
