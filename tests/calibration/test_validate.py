"""Validation: the predictions are the simulator's own numbers for the held-out run's shape and size."""

from pathlib import Path

import numpy as np
import pytest
from synthetic_measurements import synthetic_run

from gemini_ft.calibration.fit import calibrate
from gemini_ft.calibration.measurements import load_run, load_runs, recovery_events
from gemini_ft.calibration.overlay import calibrated_scenario
from gemini_ft.calibration.validate import compare, substituted_scenario
from gemini_ft.scenarios.loader import load_scenario
from gemini_ft.sim.policies import plan_for

BASE = load_scenario("gpt2-100b-p4d")


def test_predictions_equal_plan_for_of_the_substituted_scenario(
    sized_runs: list[Path], tmp_path: Path, rng: np.random.Generator
) -> None:
    scenario = calibrated_scenario(calibrate(load_runs(sized_runs), BASE), BASE)
    held_out = load_run(
        synthetic_run(tmp_path / "held" / "m.parquet", rng, shard_bytes=8 * 2**20, machines=4, source="peer")
    )
    table = compare(scenario, [held_out]).set_index("quantity")
    substituted = substituted_scenario(scenario, held_out)
    assert substituted.cluster.machines == 4 and substituted.cluster.gpus_per_machine == 1
    assert substituted.ckpt_bytes_total == pytest.approx(4 * 8 * 2**20)
    plan = plan_for(substituted)
    recovery = substituted.recovery
    assert table.loc["in-memory checkpoint", "predicted_s"] == plan.mem_ckpt_time_s
    assert table.loc["retrieval peer", "predicted_s"] == plan.recovery.retrieval_peer_s
    assert table.loc["disk load (persistent read)", "predicted_s"] == plan.recovery.retrieval_persistent_s
    # A recovery from a peer follows a hardware failure: its detection waits for the keep-alives.
    assert recovery.hardware_detection_s is not None
    expected_total = (
        recovery.hardware_detection_s
        + plan.recovery.recovery_serialization_s
        + plan.recovery.retrieval_peer_s
        + recovery.warmup_s
    )
    assert table.loc["recovery total peer", "predicted_s"] == pytest.approx(expected_total)
    row = table.loc["retrieval peer"]
    assert row["rel_error"] == pytest.approx(row["predicted_s"] / row["measured_s"] - 1)
    # The measured recovery is the slowest rank's detect + restart + retrieve.
    # 12 steps, 3 with a persist, and each process's first round (the job's start, the recovery) apart.
    assert row["n"] == 1 and table.loc["in-memory checkpoint", "n"] == 7
    assert table.loc["first round of a process", "n"] == 2
    assert "retrieval local" not in table.index


def test_recoveries_group_ranks_by_failure(tmp_path: Path, rng: np.random.Generator) -> None:
    run = load_run(synthetic_run(tmp_path / "m.parquet", rng, shard_bytes=2**20, procs=2))
    events = recovery_events(run)
    assert len(events) == 1 and events.loc[0, "ranks"] == 4 and events.loc[0, "source"] == "local"
    per_rank = run.of("detect")["duration_s"] + run.of("restart").groupby("rank")["duration_s"].last().values
    assert events.loc[0, "total_s"] > per_rank.max()  # plus the retrieve time
