"""A digest of everything the simulator returns, per case: to prove an engine change keeps results bit for bit.

Each line names a case (a preset, or the 1,024-machine scenario with some overrides) and hashes every
summary and failure row of three seeds, with numbers as exact float reprs (so an int 0 that became 0.0
still matches). Run it in two checkouts and diff the outputs; `events` is among the hashed columns.

    PYTHONPATH=$OLD python benchmarks/sim_digest.py > old.txt
    PYTHONPATH=$NEW python benchmarks/sim_digest.py > new.txt && diff old.txt new.txt
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from gemini_ft.scenarios.loader import load_scenario
from gemini_ft.sim.engine import simulate

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a script beside bench_sim, not a package
from bench_sim import OPERATIONS_ON  # the operations model of the speed targets

CASES: list[tuple[str, dict]] = [
    *((preset, {}) for preset in ("gpt2-100b-p4d", "gpt2-40b-p3dn", "llama3-405b-ops", "llama3-405b", "opt-175b")),
    ("gpt2-100b-p4d", {"cluster.machines": 1024}),
    ("gpt2-100b-p4d", {"cluster.machines": 1024, **OPERATIONS_ON}),
    ("gpt2-100b-p4d", {"cluster.machines": 16384}),
    ("gpt2-100b-p4d", {"cluster.machines": 1024, "failures.strike_during_recovery": False}),
    ("gpt2-100b-p4d", {"cluster.machines": 1024, "checkpoint.placement": "ring", "checkpoint.replicas": 3}),
    ("gpt2-100b-p4d", {"cluster.machines": 1000, "checkpoint.placement": "random", "checkpoint.replicas": 3}),
    *(("gpt2-100b-p4d", {"cluster.machines": 1024, "checkpoint.policy": p}) for p in ("strawman", "highfreq", "young-daly")),
    ("gpt2-100b-p4d", {"cluster.machines": 512, "failures.distribution": "weibull", "failures.weibull_shape": 0.7}),
    ("gpt2-100b-p4d", {"cluster.machines": 512, "failures.distribution": "lognormal"}),
    (
        "gpt2-100b-p4d",
        {"cluster.machines": 4096, "failures.correlated_fraction": 0.3, "failures.hardware_fraction": 0.8,
         "cluster.failure_domain_size": 8},
    ),
    ("gpt2-100b-p4d", {"cluster.machines": 2048, "failures.rate_per_machine_per_day": 0.5, "failures.hardware_fraction": 0.9}),
]  # fmt: skip


def _exact(row: dict, ignore: frozenset[str] = frozenset()) -> bytes:
    return repr(
        {k: v if isinstance(v, bool | str) else repr(float(v)) for k, v in row.items() if k not in ignore}
    ).encode()


def digest(preset: str, overrides: dict, seeds: int = 3, ignore: frozenset[str] = frozenset()) -> str:
    """Hash of every summary and failure row of `seeds` runs, without the columns in `ignore`."""
    scenario = load_scenario(preset, overrides)
    h = hashlib.sha256()
    for seed in range(seeds):
        result = simulate(scenario, seed)
        h.update(_exact(result.summary.row(), ignore))
        for record in result.failures:
            h.update(_exact(record.row(), ignore))
    return h.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ignore", action="append", default=[], metavar="COLUMN",
        help="leave a column out of the hash (e.g. events, for a change meant to alter only the event count)",
    )  # fmt: skip
    ignore = frozenset(parser.parse_args().ignore)
    for preset, overrides in CASES:
        label = ", ".join(f"{k}={v}" for k, v in overrides.items() if not k.startswith("operations."))
        if any(k.startswith("operations.") for k in overrides):
            label += ", operations on"
        print(f"{digest(preset, overrides, ignore=ignore)}  {preset}  {label}")


if __name__ == "__main__":
    main()
