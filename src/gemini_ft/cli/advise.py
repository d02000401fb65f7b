"""`gemini-ft advise SCENARIO`: the checkpoint policy, interval, replicas, placement and standby machines
with the highest effective training time ratio, the runner-up, and what each costs."""

from __future__ import annotations

import argparse
from pathlib import Path

from gemini_ft.cli.commands import COMMANDS
from gemini_ft.cli.options import (
    add_execution_arguments,
    add_scenario_arguments,
    check_output,
    load_scenario_from,
    positive_int,
)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "advise",
        help=COMMANDS["advise"],
        description="Candidates share their seeds (common random numbers) and are pruned by successive"
        " halving; each is run through the sweep machinery, so --workers and --dask work as for `sweep`.",
    )
    add_scenario_arguments(parser)
    add_execution_arguments(parser)
    parser.add_argument(
        "--seed",
        type=int,
        metavar="S",
        help="first seed of the common seeds (default: the scenario's run.base_seed)",
    )
    parser.add_argument(
        "--plot", type=Path, metavar="DIR", help="write the frontier (ratio vs spare machines and CPU memory)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE.parquet",
        help="write every evaluated candidate (settings, costs, seeds, ratio and interval, round, frontier)"
        " with the recommendation and the resolved scenario in its metadata",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from gemini_ft.sim.advise import advise, format_advice, write_advice

    positive_int("workers", args.workers)
    if args.plot is not None:
        check_output("plot", args.plot, kind="dir")
    if args.out is not None:
        check_output("out", args.out, kind="parquet")
    scenario = load_scenario_from(args)
    advice = advise(scenario, workers=args.workers, dask=args.dask, seed=args.seed, progress=True)
    print(format_advice(advice))
    if args.out is not None:
        print(f"wrote {write_advice(advice, scenario, args.out)}")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        from gemini_ft.analysis.catalog import advice_figure  # as `gemini-ft plot` draws an --out file

        for path in advice_figure(advice.candidates, advice.best["label"]).write(args.plot):
            print(f"wrote {path}")
    return 0
