"""`gemini-ft sweep SCENARIO`: the scenario's [sweep] grid × seeds in parallel, resumable, with a summary."""

from __future__ import annotations

import argparse
from pathlib import Path

from gemini_ft.cli.commands import COMMANDS
from gemini_ft.cli.options import (
    add_adaptive_arguments,
    add_execution_arguments,
    add_scenario_arguments,
    add_tracking_arguments,
    check_output,
    load_scenario_from,
    positive_int,
)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sweep",
        help=COMMANDS["sweep"],
        description="Every point of the scenario's [sweep] grid × its seeds, in worker processes or on Dask."
        " With --out, each finished run is written at once and a re-run resumes (or adds seeds).",
    )
    add_scenario_arguments(parser)
    add_execution_arguments(parser)
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="write results here as runs finish; a re-run resumes"
    )
    parser.add_argument(
        "--seeds", type=int, metavar="S", help="seeds per point (default: the scenario's run.seeds)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_tracking_arguments(parser)
    add_adaptive_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from gemini_ft.cli.tables import format_summary
    from gemini_ft.sim.results import summary_table
    from gemini_ft.sim.sweep import run_sweep

    positive_int("seeds", args.seeds)
    positive_int("workers", args.workers)
    if args.out is not None:
        check_output("out", args.out, kind="dir")
    track_dir = _track_dir(args)
    scenario = load_scenario_from(args, {"run.seeds": args.seeds} if args.seeds else None)
    results = run_sweep(
        scenario, args.out, workers=args.workers, dask=args.dask, progress=not args.no_progress,
        target_ci=args.target_ci, max_seeds=args.max_seeds,
    )  # fmt: skip
    by = list(scenario.sweep) or ["scenario", "policy"]
    if results.adaptive is not None:
        print(results.adaptive.describe())
    print(format_summary(summary_table(results.summary, by)))
    if args.out is not None:
        print(
            f"wrote {args.out / 'summary.parquet'} and {args.out / 'failures.parquet'} ({len(results.summary)} runs)"
        )
    if track_dir is not None:
        from gemini_ft.sim.sweep_tracking import track_sweep

        name = args.out.name if args.out is not None else "sweep"
        points = track_sweep(results.summary, list(scenario.sweep), args.track, track_dir,
                             name=name, online=args.track_online)  # fmt: skip
        print(f"tracked {points} grid point{'s' * (points != 1)} with {args.track} in {track_dir}")
    return 0


def _track_dir(args: argparse.Namespace) -> Path | None:
    """Where --track writes (checked with the other outputs, before any run), or None without --track."""
    from gemini_ft.common.errors import UserError
    from gemini_ft.common.tracking import check_tracker

    if args.track == "none":
        if args.track_dir is not None or args.track_online:
            raise UserError("track", "none", "--track-dir and --track-online need --track tensorboard|wandb")
        return None
    check_tracker(args.track)
    if args.track_online and args.track != "wandb":
        raise UserError("track_online", True, "is for --track wandb")
    directory = args.track_dir or (args.out / "track" if args.out is not None else None)
    if directory is None:
        raise UserError("track", args.track, "needs --out DIR (tracks into DIR/track) or --track-dir DIR")
    return check_output("track_dir", directory, kind="dir")
