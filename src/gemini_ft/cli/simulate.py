"""`gemini-ft simulate SCENARIO`: run the cluster simulator over the scenario's seeds and print what it found."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from gemini_ft.cli.commands import COMMANDS
from gemini_ft.cli.options import (
    add_adaptive_arguments,
    add_scenario_arguments,
    check_output,
    load_scenario_from,
    positive_int,
)

if TYPE_CHECKING:
    from gemini_ft.scenarios.schema import Scenario


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "simulate",
        help=COMMANDS["simulate"],
        description="Simulate one scenario (its [sweep] table is ignored; see `sweep`) once per seed.",
    )
    add_scenario_arguments(parser)
    parser.add_argument(
        "--seeds", type=int, metavar="S", help="number of seeds (default: the scenario's run.seeds)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE.parquet",
        help="write the summary to FILE.parquet and the failure records beside it to FILE.failures.parquet"
        " (the name must end in .parquet)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the summary rows as JSON instead of a table"
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar (shown after 1 s)"
    )
    add_adaptive_arguments(parser)
    parser.set_defaults(func=run)
    return parser


BY = ["scenario", "policy", "placement", "machines"]


def run(args: argparse.Namespace) -> int:

    positive_int("seeds", args.seeds)
    if args.out is not None:
        check_output("out", args.out, kind="parquet")
        check_output("out", args.out.with_name(args.out.stem + ".failures.parquet"), kind="file")
    scenario = load_scenario_from(args, {"run.seeds": args.seeds} if args.seeds else None)
    if args.out is None and not args.json and args.target_ci is None:
        return _print_summary(scenario, args.progress)
    return _run_with_results(args, scenario)


def _print_summary(scenario: Scenario, progress: bool) -> int:
    """Only the printed table: its rows come straight from the runs' summaries, with no DataFrame (pandas
    and pyarrow are most of a small simulation's CPU time; they load only for files and JSON)."""
    from gemini_ft.cli.tables import format_summary_rows
    from gemini_ft.sim.engine import simulate
    from gemini_ft.sim.seed_means import group_means

    single = scenario.model_copy(update={"sweep": {}})
    seeds = range(scenario.run.base_seed, scenario.run.base_seed + scenario.run.seeds)
    runs: Iterable[int] = seeds
    if progress and len(seeds) > 1:  # one seed starts without tqdm's import
        from tqdm import tqdm

        runs = tqdm(seeds, desc="simulate", unit="seed", delay=1.0)  # as run_seeds's
    rows = [simulate(single, seed).summary.row() for seed in runs]
    print(format_summary_rows(group_means(rows, BY), BY))
    return 0


def _run_with_results(args: argparse.Namespace, scenario: Scenario) -> int:
    from gemini_ft.cli.tables import format_summary
    from gemini_ft.sim.results import run_seeds, summary_table, write_results

    results = run_seeds(
        scenario.model_copy(update={"sweep": {}}),
        target_ci=args.target_ci,
        max_seeds=args.max_seeds,
        progress=args.progress,
    )
    paths = write_results(results, args.out) if args.out is not None else []
    if args.json:
        print(results.summary.to_json(orient="records", indent=2))
        return 0
    if results.adaptive is not None:
        print(results.adaptive.describe())
    print(format_summary(summary_table(results.summary, BY)))
    if paths:
        print("wrote " + ", ".join(map(str, paths)))
    return 0
