"""`gemini-ft validate`: a calibrated scenario's predictions vs held-out real-run measurements, with a
table of relative errors, a CSV and the parity plot."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gemini_ft.scenarios.schema import Scenario

from gemini_ft.cli.commands import COMMANDS
from gemini_ft.cli.options import add_set_argument, check_output


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("validate", help=COMMANDS["validate"])
    parser.add_argument("scenario", metavar="SCENARIO", help="calibrated scenario TOML (or a preset)")
    parser.add_argument(
        "measurements", nargs="+", metavar="MEASUREMENTS", help="held-out measurements.parquet files"
    )
    add_set_argument(parser)
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="directory for validation.csv and the parity plot (PNG, PDF)"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from gemini_ft.calibration.measurements import load_runs
    from gemini_ft.calibration.validate import compare, format_validation
    from gemini_ft.cli.options import load_scenario_from

    if args.out is not None:
        check_output("out", args.out, kind="dir")
    scenario = load_scenario_from(args)
    runs = load_runs(args.measurements)
    table = compare(scenario, runs)
    print(format_validation(table))
    print(format_fixed_costs(scenario))
    if args.out is not None:
        import matplotlib

        matplotlib.use("Agg")
        from gemini_ft.analysis.calibration_figures import plot_parity
        from gemini_ft.analysis.style import save_figure

        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "validation.csv", index=False)
        paths = save_figure(plot_parity(table), args.out, "parity")
        print(f"wrote {args.out / 'validation.csv'}, {', '.join(str(p) for p in paths)}")
    return 0


def format_fixed_costs(scenario: Scenario) -> str:
    """The per-transfer fixed costs and bandwidths behind the transfer predictions, in one line."""
    from gemini_ft.sim.costs import local_retrieval_gbps, replication_bandwidth_gbps

    ckpt, cluster = scenario.checkpoint, scenario.cluster
    replication = "NIC" if ckpt.replication_gbps is None else "checkpoint.replication_gbps"
    fetch = ckpt.transfer_latency_s if ckpt.fetch_latency_s is None else ckpt.fetch_latency_s
    fetch_field = (
        "checkpoint.transfer_latency_s" if ckpt.fetch_latency_s is None else "checkpoint.fetch_latency_s"
    )
    local_field = (
        "interleave.gpu_to_cpu_gbps"
        if ckpt.local_retrieval_gbps is None
        else "checkpoint.local_retrieval_gbps"
    )
    return (
        f"transfers: rounds {ckpt.transfer_latency_s:.4g} s + bytes / {replication_bandwidth_gbps(scenario):.4g}"
        f" Gbps ({replication}); peer fetches {fetch:.4g} s + bytes / {cluster.nic_bandwidth_gbps:.4g} Gbps (NIC);"
        f" fixed costs checkpoint.transfer_latency_s per round, {fetch_field} per fetch;"
        f" local {ckpt.local_retrieval_latency_s:.4g} s + bytes / {local_retrieval_gbps(scenario):.4g} Gbps"
        f" (checkpoint.local_retrieval_latency_s, {local_field})"
    )
