"""Events written by `EventLog` come back as one table; `summarize` reports them as hand-checked numbers."""

import time

import pytest

from gemini_ft.realrun.measurements import EventLog, read_events, summarize


def test_summary_of_a_run_with_one_hardware_failure(tmp_path):
    logs = [EventLog(tmp_path, "job", rank, rank, time.time()) for rank in (0, 1)]
    for log in logs:
        log.log("snapshot", 1, nbytes=1_000_000, duration_s=0.001, source="local")
        log.log("snapshot", 2, nbytes=1_000_000, duration_s=0.003, source="local")
        log.log("replicate", 1, nbytes=1_000_000, duration_s=0.010, source="local", peer=1)
        log.log("step", 1, duration_s=0.5)
        log.log("step", 2, duration_s=0.7)
        log.log("detect", -1, duration_s=4.0)
        log.log("lost_steps", 1)
        log.log("first_step", 3, duration_s=0.9)
    logs[0].log("commit", 1, nbytes=1_000_000, duration_s=0.01, source="peer", peer=1)
    logs[1].log("commit", 1, nbytes=1_000_000, duration_s=0.01, source="peer", peer=0, ok=False)
    logs[0].log("retrieve", 2, nbytes=1_000_000, duration_s=0.002, source="local")
    logs[1].log("retrieve", 2, nbytes=1_000_000, duration_s=0.008, source="peer", peer=0)
    logs[0].log("disk_load", 3, nbytes=1_000_000, duration_s=0.05, source="disk")

    summary = summarize(read_events(tmp_path))

    assert summary["events"] == 2 * 8 + 5
    assert summary["training"] == {
        "steps": 3,
        "step_mean_s": pytest.approx((0.5 + 0.7 + 0.9) / 3, abs=1e-4),
        "first_step_after_recovery_mean_s": 0.9,
    }
    snapshot = summary["checkpoint"]["snapshot"]
    assert (snapshot["count"], snapshot["mean_s"], snapshot["mean_bytes"]) == (4, 0.002, 1_000_000)
    assert snapshot["gb_per_s"] == pytest.approx(4e6 / 0.008 / 1e9)  # bytes moved / time spent
    assert summary["checkpoint"]["replicas_received"] == 1
    assert summary["checkpoint"]["replicas_rejected"] == 1
    recovery = summary["recovery"]
    assert recovery["retrieve_local"]["mean_s"] == 0.002 and recovery["retrieve_peer"]["mean_s"] == 0.008
    assert recovery["detect"] == {"count": 2, "mean_s": 4.0}  # no bytes, no bandwidth
    assert recovery["lost_steps_mean"] == 1.0
    assert summary["disk_baseline"]["disk_load_vs_local_restore"] == 25.0
