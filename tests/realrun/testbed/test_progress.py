"""Following a real run: new events as they are appended, whole lines only, a line per failure and
recovery, and the summary table the CLI prints."""

from __future__ import annotations

import json
from pathlib import Path

from gemini_ft.cli.realrun import format_summary
from gemini_ft.realrun.testbed.progress import EventFollower, describe


def _append(path: Path, *events: dict, partial: str = "") -> None:
    with path.open("a") as handle:
        handle.write("".join(json.dumps(e) + "\n" for e in events) + partial)


def test_follower_yields_each_event_once_and_waits_for_whole_lines(tmp_path):
    events = tmp_path / "events"
    events.mkdir()
    follower = EventFollower(tmp_path)
    assert follower.new_events() == []
    _append(events / "rank0.jsonl", {"event": "step", "rank": 0, "step": 1, "t_s": 1.0})
    _append(
        events / "rank1.jsonl", {"event": "step", "rank": 1, "step": 1, "t_s": 0.5}, partial='{"event": "st'
    )
    first = follower.new_events()
    assert [(e["rank"], e["t_s"]) for e in first] == [(1, 0.5), (0, 1.0)]  # in time order
    assert follower.new_events() == []  # the half-written line waits
    with (events / "rank1.jsonl").open("a") as handle:
        handle.write('ep", "rank": 1, "step": 2, "t_s": 2.0}\n')
    assert [(e["event"], e["step"]) for e in follower.new_events()] == [("step", 2)]
    assert follower.new_events() == []


def test_follower_starts_over_when_the_launcher_clears_old_events(tmp_path):
    events = tmp_path / "events"
    events.mkdir()
    follower = EventFollower(tmp_path)
    _append(events / "rank0.jsonl", *({"event": "step", "rank": 0, "step": i, "t_s": i} for i in range(5)))
    assert len(follower.new_events()) == 5
    (events / "rank0.jsonl").write_text(json.dumps({"event": "step", "rank": 0, "step": 1, "t_s": 0}) + "\n")
    assert [e["step"] for e in follower.new_events()] == [1]


def test_failures_and_recoveries_get_a_line_steps_do_not():
    assert describe({"event": "step", "rank": 0, "step": 3}) is None
    assert "restarted 4.2 s after a failure" in describe({"event": "detect", "rank": 1, "duration_s": 4.2})
    line = describe(
        {"event": "retrieve", "rank": 2, "step": 7, "source": "peer", "peer": 4, "duration_s": 0.01}
    )
    assert "restored step 7 from peer (from rank 4)" in line
    assert describe({"event": "lost_steps", "rank": 0, "step": 2}) == "rank 0: 2 step(s) of progress lost"
    detail = "machine 0 shard 1 slot 1 (step 4): its bytes fail their checksums"
    line = describe({"event": "local_rejected", "rank": 1, "step": 4, "detail": detail})
    assert line == f"rank 1: refused a damaged copy in memory: {detail}"


def test_summary_table_has_one_line_per_measured_quantity():
    summary = {
        "ok": True, "message": "completed", "wall_s": 12.5, "machine_replacements": 1, "failures_fired": 2,
        "training": {"steps": 20, "step_mean_s": 0.1},
        "checkpoint": {"snapshot": {"count": 20, "mean_s": 0.002, "mean_bytes": 400000, "gb_per_s": 0.2}},
        "recovery": {"detect": {"count": 2, "mean_s": 4.9}, "lost_steps_mean": 0.5},
    }  # fmt: skip
    text = format_summary(summary)
    assert text.splitlines()[0].split() == ["run", "ok:", "completed"]
    assert "snapshot" in text and "20×, mean 0.002 s, 0.4 MB, 0.2 GB/s" in text
    assert "lost steps mean" in text and "0.5" in text
    assert "FAILED" in format_summary({**summary, "ok": False})
