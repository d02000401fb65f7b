"""`gemini-ft plot RESULTS`: every figure a result file supports (PNG, PDF and the CSV behind each).

matplotlib, seaborn and the simulator are imported inside the handler (Agg backend, no display).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gemini_ft.cli.commands import COMMANDS
from gemini_ft.cli.options import check_output


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "plot",
        help=COMMANDS["plot"],
        description="Sim summary (sweep directory or simulate --out file), real-runner measurements, a "
        "recovery-probability table or an advise --out file: writes every figure it supports into --out and"
        " prints the paths.",
    )
    parser.add_argument("results", metavar="RESULTS", help="result file or sweep directory")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write the figures")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from gemini_ft.analysis.catalog import figures_for
    from gemini_ft.analysis.results_io import load_result_file

    check_output("out", args.out, kind="dir")
    result = load_result_file(args.results)
    for spec in figures_for(result):
        for path in spec.write(args.out):
            print(path)
    return 0
