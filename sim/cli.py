"""`gemini-ft simulate` and `gemini-ft sweep`: run the cluster simulator and print what it found."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from scenarios.cli import add_set_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    simulate = subparsers.add_parser("simulate", help="simulate one scenario over its seeds")
    simulate.add_argument("scenario", metavar="NAME|PATH", help="a preset name or a scenario TOML file")
    add_set_argument(simulate)
    simulate.add_argument("--seeds", type=int, metavar="S", help="number of seeds (default: run.seeds)")
    simulate.add_argument(
        "--out", type=Path, metavar="FILE", help="write the summary to FILE.parquet (+ FILE.failures.parquet)"
    )
    simulate.add_argument("--json", action="store_true", help="print the summary rows as JSON")
    simulate.set_defaults(func=_simulate)

    sweep = subparsers.add_parser("sweep", help="run the scenario's [sweep] grid × seeds")
    sweep.add_argument("scenario", metavar="NAME|PATH", help="a preset name or a scenario TOML file")
    add_set_argument(sweep)
    sweep.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), metavar="N", help="worker processes"
    )
    sweep.add_argument(
        "--dask", metavar="ADDRESS|local", help="run on a Dask distributed scheduler ('local' starts one)"
    )
    sweep.add_argument(
        "--out", type=Path, metavar="DIR", help="write results here as runs finish; a re-run resumes"
    )
    sweep.add_argument(
        "--seeds", type=int, metavar="S", help="number of seeds per point (default: run.seeds)"
    )
    sweep.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sweep.set_defaults(func=_sweep)


def _load(args: argparse.Namespace):
    from scenarios.errors import UserError
    from scenarios.loader import load_scenario, parse_overrides

    overrides = parse_overrides(args.overrides)
    if args.seeds is not None:
        if args.seeds < 1:
            raise UserError("--seeds", args.seeds, "must be an integer ≥ 1")
        overrides["run.seeds"] = args.seeds
    return load_scenario(args.scenario, overrides)


def _simulate(args: argparse.Namespace) -> int:
    from scenarios.errors import UserError
    from sim.results import run_seeds, summary_table, write_results

    if args.out is not None and args.out.suffix != ".parquet":
        raise UserError("--out", str(args.out), "must be a file name ending in .parquet")
    scenario = _load(args).model_copy(update={"sweep": {}})
    results = run_seeds(scenario)
    if args.out is not None:
        paths = write_results(results, args.out)
    if args.json:
        print(results.summary.to_json(orient="records", indent=2))
    else:
        print(_format(summary_table(results.summary, ["scenario", "policy", "placement", "machines"])))
    if args.out is not None and not args.json:
        print("wrote " + ", ".join(map(str, paths)))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from sim.results import summary_table
    from sim.sweep import run_sweep

    scenario = _load(args)
    results = run_sweep(
        scenario, args.out, workers=args.workers, dask=args.dask, progress=not args.no_progress
    )
    by = list(scenario.sweep) or ["scenario", "policy"]
    print(_format(summary_table(results.summary, by)))
    if args.out is not None:
        print(
            f"wrote {args.out / 'summary.parquet'} and {args.out / 'failures.parquet'} ({len(results.summary)} runs)"
        )
    return 0


def _format(table) -> str:
    formats = {
        "ratio": "{:.4f}".format,
        "ratio_ci95": "±{:.4f}".format,
        "wasted_h": "{:.1f}".format,
        "failures": "{:.1f}".format,
        "wasted_per_failure_min": "{:.1f}".format,
        "from_cpu_memory": "{:.0%}".format,
    }
    return table.to_string(formatters=formats, na_rep="-")
