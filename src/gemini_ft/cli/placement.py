"""`gemini-ft placement`: odds of recovering from CPU memory per placement strategy and failure count.

Prints a table (rows: strategies, plus the paper's Corollary 1 bound when group applies; columns: k
simultaneous failures), or JSON rows with `--json`, or who holds whose checkpoint with `--show`.
The numbers come from `gemini_ft.placement.probability.probability_table`.
"""

from __future__ import annotations

import argparse
import json
import math

from gemini_ft.cli.commands import COMMANDS
from gemini_ft.placement.registry import PLACEMENTS, REGISTRY

METHODS = ("exact", "enumerate", "montecarlo")  # gemini_ft.placement.probability.METHODS, checked by a test
FAILURE_MODES = ("machines", "domains")  # gemini_ft.placement.sampling.FAILURE_MODES, checked by a test
ENUMERATION_LIMIT = 3_000_000  # gemini_ft.placement.sampling.ENUMERATION_LIMIT, checked by a test
SHOW_LIMIT = 100_000
"""--show prints one line per machine: more is not something to read."""


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "placement",
        help=COMMANDS["placement"],
        description=(
            "Probability that every machine's checkpoint can be recovered from CPU memory when k machines "
            "(or k whole failure domains) fail at once, chosen uniformly."
        ),
    )
    parser.add_argument("--machines", "-N", type=int, required=True, help="number of machines N")
    parser.add_argument(
        "--replicas", "-m", type=int, required=True, help="replicas m per checkpoint, own copy included"
    )
    parser.add_argument(
        "--strategy",
        dest="strategies",
        action="extend",
        nargs="+",
        metavar="S",
        choices=PLACEMENTS,
        help="placements to compare: "
        + "; ".join(f"{name}: {kind.summary}" for name, kind in REGISTRY.items())
        + " (default: all that apply to N and m)",
    )
    parser.add_argument(
        "--failures",
        "-k",
        dest="failures",
        action="extend",
        nargs="+",
        type=int,
        metavar="K",
        help="numbers of simultaneous failures (default 1..min(N, 2m + 2))",
    )
    parser.add_argument(
        "--domain-size",
        type=int,
        help="machines per failure domain (for 'domain' and --failure-mode domains)",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        help=f"{' | '.join(METHODS)} (default: exact; with --failure-mode domains, enumerate when there are"
        f" at most {ENUMERATION_LIMIT:,} failure sets per k, else montecarlo)",
    )
    parser.add_argument("--samples", type=int, default=100_000, help="Monte Carlo samples per cell")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random placement and the samples")
    parser.add_argument(
        "--failure-mode",
        default="machines",
        choices=FAILURE_MODES,
        help="machines: k machines fail; domains: k whole failure domains fail",
    )
    parser.add_argument(
        "--show", action="store_true", help="print which machines hold each machine's replicas"
    )
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from gemini_ft.common.errors import UserError
    from gemini_ft.placement.layout import check_sizes
    from gemini_ft.placement.probability import probability_table

    check_sizes(args.machines, args.replicas)
    if args.method is None:
        args.method = _default_method(args)
    if args.seed < 0:
        raise UserError("seed", args.seed, "must be an integer ≥ 0")
    if args.show and args.machines > SHOW_LIMIT:
        raise UserError(
            "machines", args.machines, f"--show prints one line per machine; at most {SHOW_LIMIT:,}"
        )
    if args.show:
        print(show_placements(args.strategies, args.machines, args.replicas, args.domain_size, args.seed))
        return 0
    rows = probability_table(
        args.strategies,
        args.machines,
        args.replicas,
        args.failures,
        method=args.method,
        samples=args.samples,
        seed=args.seed,
        failure_mode=args.failure_mode,
        domain_size=args.domain_size,
        # Only a random placement the user did not ask for may fall back to sampling when too costly.
        montecarlo_fallback=not args.strategies,
    )
    print(json.dumps(rows, indent=1) if args.json else format_table(rows))
    return 0


def _default_method(args: argparse.Namespace) -> str:
    """Exact closed forms for machine failures; whole-domain failures have none, so enumerate the
    domain subsets when that is cheap and sample otherwise."""
    if args.failure_mode == "machines" or args.domain_size is None or args.domain_size < 1:
        return "exact"  # bad domain sizes are reported by probability_table
    domains = -(-args.machines // args.domain_size)
    ks = args.failures or range(1, min(domains, 2 * args.replicas + 2) + 1)
    cheap = all(0 <= k <= domains and math.comb(domains, k) <= ENUMERATION_LIMIT for k in ks)
    return "enumerate" if cheap else "montecarlo"


def show_placements(strategies: list[str] | None, n: int, m: int, domain_size: int | None, seed: int) -> str:
    """Each strategy's holders, one machine per line: `machine: holders (own copy first)`."""
    import numpy as np

    from gemini_ft.placement.layout import build_placement
    from gemini_ft.placement.probability import default_strategies

    names = strategies or default_strategies(n, m, domain_size)
    blocks = []
    for name in names:
        # The same seed stream as probability_table's placement, so --show shows what was evaluated.
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        placement = build_placement(name, n, m, domain_size=domain_size, rng=rng)
        width = len(str(n - 1))
        lines = [f"{name} (N = {n}, m = {m}{f', domain size {domain_size}' if domain_size else ''}):"]
        for i in range(n):
            lines.append(f"  {i:>{width}}: " + " ".join(f"{h:>{width}}" for h in placement.holders_of(i)))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def format_table(rows: list[dict[str, object]]) -> str:
    """Strategies as rows, k as columns; Monte Carlo cells carry their confidence interval."""
    ks = sorted({int(r["failures"]) for r in rows})  # type: ignore[call-overload]
    names = list(dict.fromkeys(str(r["strategy"]) for r in rows))
    cells = {(str(r["strategy"]), int(r["failures"])): r for r in rows}  # type: ignore[call-overload]
    first = rows[0]
    header = [f"strategy \\ k (N = {first['machines']}, m = {first['replicas']})", *map(str, ks), "method"]
    body = []
    for name in names:
        methods = sorted({str(cells[name, k]["method"]) for k in ks if (name, k) in cells})
        body.append([name, *(_cell(cells.get((name, k))) for k in ks), ",".join(methods)])
    widths = [max(len(line[c]) for line in [header, *body]) for c in range(len(header))]
    return "\n".join(
        "  ".join(
            text.ljust(w) if c in (0, len(header) - 1) else text.rjust(w)
            for c, (text, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in [header, *body]
    )


def _cell(row: dict[str, object] | None) -> str:
    if row is None:
        return "-"
    p = float(row["probability"])  # type: ignore[arg-type]
    if row["ci_low"] is None:
        # At scale the odds round to 1.000000; show how far from 1 they are instead.
        return f"1-{1 - p:.2e}" if p < 1 and round(p, 6) == 1 else f"{p:.6f}"
    return f"{p:.4f} [{float(row['ci_low']):.4f}, {float(row['ci_high']):.4f}]"  # type: ignore[arg-type]
