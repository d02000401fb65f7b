"""Small result tables with the columns the simulator and the real runner write, built from a seeded
generator, so the analysis tests do not depend on running a simulation. (Not in conftest.py: test
modules import these, and another package's conftest would shadow the name.)"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gemini_ft.analysis.tables import WASTED_COMPONENTS

POLICIES = ("gemini", "highfreq", "strawman", "young-daly")


def make_summary(
    rates: tuple[float, ...] = (0.005, 0.015, 0.05),
    machines: tuple[int, ...] = (16,),
    seeds: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per policy × rate × machines × seed, with wasted-time components that add up."""
    rng = np.random.default_rng(seed)
    rows = []
    for policy_index, policy in enumerate(POLICIES):
        for rate in rates:
            for n in machines:
                for s in range(seeds):
                    failures = int(rng.integers(1, 20))
                    components = {
                        f"wasted_{c}_s": float(rng.uniform(10, 600) * (1 + policy_index)) * failures
                        for c in WASTED_COMPONENTS
                    }
                    wasted = sum(components.values())
                    duration = 30 * 86400.0
                    rows.append(
                        {
                            "scenario": "test",
                            "seed": s,
                            "policy": policy,
                            "placement": "group",
                            "replicas": 2,
                            "machines": n,
                            "failure_rate_per_machine_per_day": rate,
                            "nic_bandwidth_gbps": 400.0,
                            "storage_bandwidth_gbps": 20.0,
                            "duration_s": duration,
                            "useful_s": duration - wasted,
                            "wasted_s": wasted,
                            "effective_ratio": (duration - wasted) / duration,
                            "ckpt_time_s": 3.0 if policy == "gemini" else 561.0,
                            "failures": failures,
                            **components,
                        }
                    )
    return pd.DataFrame(rows)


def make_measurements(seed: int = 0) -> pd.DataFrame:
    """Real-runner events for two checkpoint sizes, two ranks, three repeats."""
    rng = np.random.default_rng(seed)
    rows = []
    events = [
        ("snapshot", "local"),
        ("replicate", "peer"),
        ("disk_save", "disk"),
        ("retrieve", "local"),
        ("retrieve", "peer"),
        ("retrieve", "persistent"),
        ("disk_load", "disk"),
        ("commit", None),
    ]
    for size in (16e6, 64e6):
        for rank in range(2):
            for step in range(3):
                for event, source in events:
                    rows.append(
                        {
                            "run_id": f"run-{size:.0f}",  # one model size per run
                            "rank": rank,
                            "machine": rank,
                            "event": event,
                            "step": step,
                            "bytes": size,
                            "duration_s": float(size / 1e9 * rng.uniform(0.5, 2.0)),
                            "source": source,
                            "peer": None,
                            "t_s": float(step),
                        }
                    )
    return pd.DataFrame(rows)
