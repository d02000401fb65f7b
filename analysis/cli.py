"""`gemini-ft plot` and `gemini-ft report`: figures from a result file, or the whole paper report.

matplotlib, seaborn and the simulator are imported inside the handlers (Agg backend, no display), so
`gemini-ft --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    plot = subparsers.add_parser(
        "plot",
        help="draw the figures a result file supports (PNG + PDF + CSV)",
        description="Sim summary (sweep directory or simulate --out file), real-runner measurements, or a "
        "recovery-probability table: writes every figure it supports into --out and prints the paths.",
    )
    plot.add_argument("results", metavar="RESULTS", help="result file or sweep directory")
    plot.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write the figures")
    plot.set_defaults(func=_plot)

    report = subparsers.add_parser(
        "report",
        help="run the preset sweeps and write every paper figure plus index.html",
        description="Runs the sweeps behind the paper's figures, writes each figure as PNG, PDF and CSV, "
        "findings.csv and an index.html comparing the paper's findings with the values obtained.",
    )
    report.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write the report")
    report.add_argument(
        "--quick", action="store_true", help="fewer seeds and points, shorter runs (~1 minute)"
    )
    report.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes for the sweeps")
    report.add_argument(
        "--measurements",
        type=Path,
        metavar="PATH",
        help="also plot these real-runner measurements (measurements.parquet)",
    )
    report.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    report.set_defaults(func=_report)


def _use_agg() -> None:
    import matplotlib

    matplotlib.use("Agg")


def _plot(args: argparse.Namespace) -> int:
    _use_agg()
    from analysis.catalog import figures_for
    from analysis.results_io import load_result_file

    result = load_result_file(args.results)
    for spec in figures_for(result):
        for path in spec.write(args.out):
            print(path)
    return 0


def _report(args: argparse.Namespace) -> int:
    _use_agg()
    from analysis.report import FULL, QUICK, build_report
    from scenarios.errors import UserError

    if args.workers < 1:
        raise UserError("--workers", args.workers, "must be an integer ≥ 1")
    report = build_report(
        args.out,
        QUICK if args.quick else FULL,
        workers=args.workers,
        progress=args.progress,
        measurements=args.measurements,
    )
    for finding in report.findings:
        print(f"[{'holds' if finding.holds else 'DIFFERS'}] {finding.claim}: {finding.obtained}")
    print(f"report: {report.index} ({len(report.files)} files)")
    return 0
