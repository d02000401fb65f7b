"""`gemini-ft realrun`: train for real on N emulated machines with in-memory checkpoints and failures.

Its flags are generated from `gemini_ft.realrun.config.RealRunConfig` (help = each field's description), so the
flags and the config cannot drift apart. While the job runs, a progress bar follows the steps and a
line is printed for each failure and recovery; at the end, a summary table (or JSON with `--json`).
torch is imported inside the handler so `gemini-ft --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

from gemini_ft.cli.commands import COMMANDS
from gemini_ft.cli.options import add_model_flags, check_output, model_values
from gemini_ft.realrun.config import RealRunConfig

# Fields whose flag is not "--" + the field name with dashes (a True bool gets "--no-" automatically).
FLAG_NAMES = {"keep_alive_s": "--keep-alive", "failures": "--fail", "time_limit_s": "--time-limit"}
METAVARS = {"keep_alive_s": "SECONDS", "failures": "SPEC", "model_size": "SIZE", "time_limit_s": "SECONDS"}


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "realrun",
        help=COMMANDS["realrun"],
        description="Failures: sw@step=N:rank=R (kill a training process), hw@step=N:machine=M (kill a"
        " machine and wipe its memory), optionally :during=snapshot|replicate; random:count=C:seed=S.",
    )
    flags = add_model_flags(parser, RealRunConfig, names=FLAG_NAMES, metavars=METAVARS)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    parser.add_argument("--no-progress", action="store_true", help="no live progress while the job runs")
    parser.set_defaults(func=run, model_flags=flags)
    return parser


def run(args: argparse.Namespace) -> int:
    from gemini_ft.common.errors import UserError
    from gemini_ft.realrun.measurements import (
        engine_paths,
        read_engine_info,
        read_events,
        summarize,
        write_parquet,
    )
    from gemini_ft.realrun.testbed.launcher import Terminated, config_json, launch, validate
    from gemini_ft.realrun.testbed.netns import NetnsError

    check_output("out", args.out, kind="dir")
    cfg = RealRunConfig(**model_values(args, args.model_flags))
    if cfg.cleanup:
        from gemini_ft.realrun.testbed.orphans import end_orphans
        from gemini_ft.realrun.testbed.shm_jobs import cleanup_stale_shm

        ended = end_orphans()  # first: a live orphan could still write into the memory removed next
        removed = cleanup_stale_shm()
        if args.json:
            print(json.dumps({"ended": ended, "removed": [str(path) for path in removed]}, indent=2))
            return 0
        print(f"ended {len(ended)} process{'es' * (len(ended) != 1)} of dead jobs")
        print(
            f"removed {len(removed)} shared-memory director{'y' if len(removed) == 1 else 'ies'} of dead jobs"
        )
        for path in removed:
            print(f"  {path}")
        return 0
    follower = None
    try:
        validate(cfg)  # every mistake is reported before a progress bar appears
        follower = _Progress(cfg) if not args.no_progress and not args.json else None
        if follower:
            follower.start()
        result = launch(cfg)
    except Terminated as exc:
        print("gemini-ft: terminated", file=sys.stderr)
        return 128 + exc.signum
    except NetnsError as exc:  # an `ip`/`tc` step of the --netns testbed failed: say which, in one line
        raise UserError("netns", True, str(exc)) from None
    finally:
        if follower:
            follower.stop()
    frame = read_events(result.run_dir)
    parquet = result.run_dir / "measurements.parquet"
    write_parquet(frame, parquet, config_json(result.run_dir))
    summary = {"ok": result.ok, "message": result.message, "wall_s": round(result.wall_s, 2),
               "machine_replacements": result.machine_replacements,
               "failures_fired": len(list((result.run_dir / "faults").glob("fired*.json"))),
               **summarize(frame)}  # fmt: skip
    engine = read_engine_info(result.run_dir)
    if engine:  # which copy path each rank took (device snapshot, registered shm, staging, host)
        summary.setdefault("checkpoint", {})["engine_path"] = engine_paths(engine)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    print(f"measurements: {parquet}")
    return 0 if result.ok else 1


def format_summary(summary: dict[str, Any]) -> str:
    """The run summary as an indented two-column table, one line per measured quantity."""
    lines = [f"{'run':<34} {'ok' if summary['ok'] else 'FAILED'}: {summary['message']}"]
    lines.append(f"{'  wall-clock':<34} {summary['wall_s']} s")
    lines.append(
        f"{'  failures fired / replacements':<34} {summary['failures_fired']} / {summary['machine_replacements']}"
    )
    for section in ("training", "checkpoint", "recovery", "disk_baseline"):
        values = summary.get(section)
        if not values:
            continue
        lines.append(section)
        for name, value in values.items():
            lines.append(f"  {name.replace('_', ' '):<32} {_cell(value)}")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        parts = [f"{value.get('count', '?')}×", f"mean {value['mean_s']} s"] if "mean_s" in value else []
        if "mean_bytes" in value:
            parts.append(f"{value['mean_bytes'] / 1e6:.3g} MB")
        if "gb_per_s" in value:
            parts.append(f"{value['gb_per_s']} GB/s")
        return ", ".join(parts) or json.dumps(value)
    return str(value)


class _Progress:
    """A progress bar of rank 0's steps and a line per failure and recovery, from a thread."""

    def __init__(self, cfg: RealRunConfig) -> None:
        from tqdm import tqdm

        from gemini_ft.realrun.testbed.progress import EventFollower

        self.follower = EventFollower(Path(cfg.out).resolve())
        self.bar = tqdm(total=cfg.steps, desc="realrun", unit="step", leave=False)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._follow, name="progress", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        self._show()
        self.bar.close()

    def _follow(self) -> None:
        while not self.done.wait(0.5):
            self._show()

    def _show(self) -> None:
        from gemini_ft.realrun.testbed.progress import describe

        for event in self.follower.new_events():
            if event.get("rank") == 0 and event.get("event") in ("step", "first_step"):
                self.bar.n = int(event["step"])
                self.bar.refresh()
            line = describe(event)
            if line:
                self.bar.write(line)
