"""Validate a calibrated scenario on held-out runs: the simulator's predictions vs measured times.

For each held-out run, the scenario gets that run's shape and checkpoint size; `sim.policies.plan_for`
then gives the in-memory checkpoint time and the retrieval time per source, and a recovery costs
what the simulator's engine charges (detection + serialization + retrieval + warm-up; no
replacement wait, since the testbed's replacement machine starts at once, like a standby).
"""

from __future__ import annotations

import pandas as pd

from calibration.measurements import Run, recovery_events, replication_rounds
from scenarios.errors import UserError
from scenarios.schema import Scenario
from sim.costs import SOURCES
from sim.policies import plan_for

COLUMNS = ["run", "quantity", "source", "n", "measured_s", "predicted_s", "rel_error"]


def substituted_scenario(scenario: Scenario, run: Run) -> Scenario:
    """`scenario` with the held-out run's cluster shape, replica count, placement and checkpoint size."""
    cfg = run.config
    overrides = {
        "cluster.machines": cfg.machines,
        "cluster.gpus_per_machine": cfg.procs_per_machine,
        "checkpoint.replicas": cfg.replicas,
        "checkpoint.placement": cfg.placement,
        "model.parameters": run.ckpt_bytes_total() / scenario.model.ckpt_bytes_per_param,
    }
    return scenario.model_copy(update={"sweep": {}}).with_overrides(
        overrides, source=f"scenario for {run.path}"
    )


def compare(scenario: Scenario, runs: list[Run]) -> pd.DataFrame:
    """One row per (run, quantity): mean measured time, the prediction and the relative error."""
    rows = []
    for run in runs:
        rows += _compare_run(scenario, run)
    if not rows:
        raise UserError(
            "MEASUREMENTS",
            [str(r.path) for r in runs],
            "no replicate, retrieve or disk_load events to validate against",
        )
    table = pd.DataFrame(rows, columns=COLUMNS[:-1])
    table["rel_error"] = table["predicted_s"] / table["measured_s"] - 1.0
    return table


def _compare_run(scenario: Scenario, run: Run) -> list[dict]:
    held_out = substituted_scenario(scenario, run)
    plan = plan_for(held_out)
    rows = []

    def add(quantity: str, source: str, measured: pd.Series, predicted: float) -> None:
        if len(measured):
            rows.append(
                {
                    "run": run.label,
                    "quantity": quantity,
                    "source": source,
                    "n": len(measured),
                    "measured_s": float(measured.mean()),
                    "predicted_s": predicted,
                }
            )

    rounds = replication_rounds(run)
    # A checkpoint is complete when the slowest rank's round is.
    per_step = rounds.groupby("step")["duration_s"].max() if not rounds.empty else pd.Series(dtype=float)
    add("in-memory checkpoint", "peer", per_step, plan.mem_ckpt_time_s)
    recs = recovery_events(run)
    for source in SOURCES:
        of_source = recs[recs["source"] == source]
        add(f"retrieval {source}", source, of_source["retrieve_s"], plan.recovery.retrieval_s(source))
    for source in SOURCES:
        of_source = recs[recs["source"] == source]
        add(f"recovery total {source}", source, of_source["total_s"], plan.recovery.total_s(source))
    # The disk baseline's load is a persistent read of the same state by all ranks at once.
    loads = run.of("disk_load").groupby("step")["duration_s"].max()
    add("disk load (persistent read)", "persistent", loads, plan.recovery.retrieval_persistent_s)
    return rows
