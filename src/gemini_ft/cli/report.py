"""`gemini-ft report --out DIR`: run the preset sweeps, write every paper figure and an index.html that
puts the paper's findings beside the values obtained."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from gemini_ft.cli.commands import COMMANDS
from gemini_ft.cli.options import check_output, positive_int


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        help=COMMANDS["report"],
        description="Runs the sweeps behind the paper's figures, writes each figure as PNG, PDF and CSV, "
        "findings.csv and an index.html comparing the paper's findings with the values obtained.",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write the report")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer seeds and points, shorter runs (seconds instead of minutes)",
    )
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes for the sweeps")
    parser.add_argument(
        "--measurements",
        type=Path,
        metavar="PATH",
        help="also plot these real-runner measurements (measurements.parquet)",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from gemini_ft.analysis.report import FULL, QUICK, build_report
    from gemini_ft.common.version import __version__

    positive_int("workers", args.workers)
    check_output("out", args.out, kind="dir")
    report = build_report(
        args.out,
        QUICK if args.quick else FULL,
        workers=args.workers,
        progress=args.progress,
        measurements=args.measurements,
        version=__version__,
        command=command_line(),
    )
    for finding in report.findings:
        print(f"[{'holds' if finding.holds else 'DIFFERS'}] {finding.claim}: {finding.obtained}")
    print(f"report: {report.index} ({len(report.files)} files)")
    return 0


def command_line() -> str:
    """The command as the user typed it, for the report's record of what made it."""
    return shlex.join(["gemini-ft", *sys.argv[1:]])
