"""`gemini-ft interleave SCENARIO`: compare checkpoint-traffic schemes on one training iteration.

Prints a table per scheme (iteration time, overhead, checkpoint completion, GPU buffer, fits?),
`--json` a JSON list, and `--plot DIR` writes a Gantt timeline per scheme (PNG and PDF).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gemini_ft.cli.commands import COMMANDS
from gemini_ft.cli.options import add_scenario_arguments, check_output, load_scenario_from

SCHEMES = (
    "baseline",
    "blocking",
    "naive",
    "no-pipeline",
    "gemini",
)  # gemini_ft.scenarios.schema.SCHEMES (tested)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("interleave", help=COMMANDS["interleave"])
    add_scenario_arguments(parser)
    parser.add_argument(
        "--scheme",
        dest="schemes",
        action="append",
        choices=SCHEMES,
        help="scheme to evaluate (repeatable; default: all)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument(
        "--plot", metavar="DIR", type=Path, help="write a timeline figure per scheme into DIR"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from gemini_ft.sim.interleave import evaluate_schemes

    if args.plot is not None:
        check_output("plot", args.plot, kind="dir")
    scenario = load_scenario_from(args)
    results = evaluate_schemes(scenario, args.schemes)
    if args.json:
        print(json.dumps([result.summary() for result in results], indent=2))
    else:
        print(format_table(scenario.name, [result.summary() for result in results]))
    if args.plot is not None:
        for path in write_figures(results, args.plot, scenario.name):
            print(f"wrote {path}")
    return 0


def format_table(name: str, rows: list[dict[str, object]]) -> str:
    """A fixed-width table of scheme summaries."""
    header = f"{'scheme':<12} {'iteration s':>11} {'overhead':>9} {'ckpt done s':>11} {'chunks':>6} {'buffer MiB':>10} {'GPU left MiB':>12} {'fits':>5}"
    lines = [f"{name}: one iteration per scheme", header, "-" * len(header)]
    for row in rows:
        ckpt = "-" if row["checkpoint_time_s"] is None else f"{row['checkpoint_time_s']:.3f}"
        left = "?" if row["gpu_memory_left_mib"] is None else f"{row['gpu_memory_left_mib']:.0f}"
        fits = {True: "yes", False: "NO", None: "?"}[row["fits"]]  # type: ignore[index]
        lines.append(
            f"{row['scheme']:<12} {row['iteration_time_s']:>11.3f} {row['overhead_fraction']:>+9.2%} {ckpt:>11}"
            f" {row['chunks']:>6} {row['buffer_mib']:>10.1f} {left:>12} {fits:>5}"
        )
    return "\n".join(lines)


def write_figures(results: list, directory: Path, name: str) -> list[Path]:
    """One PNG and one PDF per scheme; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    from gemini_ft.analysis.timeline import plot_timeline
    from gemini_ft.common.errors import UserError

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError("plot", str(directory), f"cannot create the directory: {exc.strerror}") from None
    written = []
    for result in results:
        title = f"{name}: {result.scheme} ({result.overhead_fraction:+.1%} iteration time)"
        figure = plot_timeline(result.intervals_frame(), title=title)
        for suffix in ("png", "pdf"):
            path = directory / f"timeline-{result.scheme}.{suffix}"
            figure.savefig(path, dpi=150)
            written.append(path)
    return written
