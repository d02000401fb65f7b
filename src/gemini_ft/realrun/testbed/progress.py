"""Follow a real run while it trains: new events from every rank's JSONL file, as they are written.

The launcher blocks until the job ends; a follower reads `events/rank*.jsonl` (whole lines only:
each is one O_APPEND write) from another thread, so the CLI can show steps, failures and recoveries
live without the launcher knowing about any display.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class EventFollower:
    """Yields the events appended since the last call, in file order per rank."""

    def __init__(self, run_dir: Path) -> None:
        self.events_dir = run_dir / "events"
        self._offsets: dict[Path, int] = {}

    def new_events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for path in sorted(self.events_dir.glob("rank*.jsonl")):
            offset = self._offsets.get(path, 0)
            try:
                size = path.stat().st_size
                if size < offset:  # the launcher cleared a previous run's events
                    offset = 0
                elif size == offset:  # nothing new: most polls, so no open and read
                    continue
                with path.open("rb") as handle:
                    handle.seek(offset)
                    data = handle.read()
            except OSError:
                continue
            whole = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next call
            self._offsets[path] = offset + len(whole)
            for line in whole.splitlines():
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        return sorted(events, key=lambda e: e.get("t_s", 0.0))


def describe(event: dict[str, Any]) -> str | None:
    """One line for the events a person watching a run cares about (failures and recoveries)."""
    kind, rank = event.get("event"), event.get("rank")
    duration = event.get("duration_s") or 0.0
    if kind == "detect":
        return f"rank {rank}: restarted {duration:.1f} s after a failure"
    if kind == "retrieve":
        source = event.get("source")
        peer = f" (from rank {event['peer']})" if event.get("peer") is not None else ""
        return f"rank {rank}: restored step {event.get('step')} from {source}{peer} in {duration:.3f} s"
    if kind == "local_rejected":
        return f"rank {rank}: refused a damaged copy in memory: {event.get('detail')}"
    if kind == "lost_steps" and event.get("step"):
        return f"rank {rank}: {event['step']} step(s) of progress lost"
    if kind == "first_step":
        return f"rank {rank}: training again at step {event.get('step')}"
    return None
