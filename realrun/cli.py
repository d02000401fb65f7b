"""`gemini-ft realrun`: train for real on N emulated machines with in-memory checkpoints and failures.

torch is imported inside the handler so `gemini-ft --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "realrun",
        help="train a GPT with DDP + in-memory checkpoints on local emulated machines, with failures",
    )
    parser.add_argument("--machines", type=int, default=2, help="emulated machines (one torchrun agent each)")
    parser.add_argument("--procs-per-machine", type=int, default=1, help="training processes per machine")
    parser.add_argument("--model-size", default="tiny", help="'tiny' or a parameter count: 1m, 50m, 1b")
    parser.add_argument("--placement", default="group", help="group | ring | mixed")
    parser.add_argument("--replicas", type=int, default=2, help="copies of each shard, the owner's included")
    parser.add_argument("--ckpt-every", type=int, default=1, help="steps between in-memory checkpoints")
    parser.add_argument(
        "--persist-every", type=int, default=10, help="steps between persistent DCP checkpoints"
    )
    parser.add_argument("--steps", type=int, default=20, help="training steps")
    parser.add_argument(
        "--fail", action="append", default=[], metavar="SPEC",
        help="sw@step=N:rank=R | hw@step=N:machine=M [:during=snapshot|replicate] | random:count=C:seed=S (repeatable)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("realrun-out"), help="run directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model and the synthetic data")
    parser.add_argument("--batch-size", type=int, default=4, help="samples per rank per step")
    parser.add_argument("--port", type=int, default=29531, help="loopback port of the rendezvous store")
    parser.add_argument("--max-restarts", type=int, default=8, help="torchrun --max-restarts")
    parser.add_argument(
        "--keep-alive", type=int, default=1, metavar="SECONDS",
        help="rendezvous keep-alive interval: a dead machine is dropped after two missed ones (default 1)",
    )  # fmt: skip
    parser.add_argument("--chunk-mib", type=float, default=4.0, help="replication chunk size in MiB")
    parser.add_argument("--no-disk-baseline", action="store_true", help="skip the DCP save/load baseline")
    parser.add_argument(
        "--netns", action="store_true",
        help="each machine in its own network namespace, on a bridge (root only; removed afterwards)",
    )  # fmt: skip
    parser.add_argument(
        "--link-gbps", type=float, default=None, help="with --netns: link rate per machine and direction"
    )
    parser.add_argument(
        "--link-latency-ms", type=float, default=0.0, help="with --netns: one-way machine-to-machine delay"
    )
    parser.add_argument("--time-limit", type=float, default=1800.0, help="give up after this many seconds")
    parser.add_argument("--force", action="store_true", help="reuse an --out holding a previous realrun")
    parser.add_argument(
        "--cleanup", action="store_true", help="only remove shared memory of dead gemini-ft jobs, then exit"
    )
    parser.set_defaults(func=_realrun)


# Config fields whose flag is not simply "--" + the field name with dashes.
_FLAGS = {
    "keep_alive_s": "--keep-alive", "failures": "--fail", "disk_baseline": "--no-disk-baseline",
    "time_limit_s": "--time-limit",
}  # fmt: skip


def _flag(field: str) -> str:
    return field if field.startswith("-") else _FLAGS.get(field, "--" + field.replace("_", "-"))


def _realrun(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from gemini_ft import __version__
    from realrun.config import RealRunConfig
    from realrun.launcher import Terminated, config_json, launch
    from realrun.measurements import read_events, summarize, write_parquet
    from realrun.netns import NetnsError
    from scenarios.errors import UserError

    if args.placement not in ("group", "ring", "mixed"):
        raise UserError("--placement", args.placement, "allowed: group, ring, mixed")
    try:
        cfg = RealRunConfig(
            machines=args.machines, procs_per_machine=args.procs_per_machine, model_size=args.model_size,
            placement=args.placement, replicas=args.replicas, ckpt_every=args.ckpt_every,
            persist_every=args.persist_every, steps=args.steps, failures=tuple(args.fail), out=args.out,
            seed=args.seed, batch_size=args.batch_size, port=args.port, max_restarts=args.max_restarts,
            keep_alive_s=args.keep_alive, chunk_mib=args.chunk_mib, disk_baseline=not args.no_disk_baseline,
            netns=args.netns, link_gbps=args.link_gbps, link_latency_ms=args.link_latency_ms,
            time_limit_s=args.time_limit, force=args.force, cleanup=args.cleanup,
        )  # fmt: skip
    except ValidationError as exc:  # name the flag the user typed, not the config field behind it
        first = exc.errors(include_url=False)[0]
        if not first["loc"]:
            raise
        field = str(first["loc"][0])
        message = first["msg"][:1].lower() + first["msg"][1:]
        raise UserError(_flag(field), first.get("input"), message) from None
    if cfg.cleanup:
        from realrun.shm_jobs import cleanup_stale_shm

        removed = cleanup_stale_shm()
        print(json.dumps({"removed": [str(p) for p in removed]}, indent=2))
        return 0
    try:
        result = launch(cfg)
    except UserError as exc:  # the library names config fields; the user typed flags
        raise UserError(_flag(exc.field), exc.value, exc.allowed) from None
    except Terminated as exc:
        print("gemini-ft: terminated", file=sys.stderr)
        return 128 + exc.signum
    except NetnsError as exc:  # an `ip`/`tc` step of the --netns testbed failed: say which, in one line
        raise UserError("--netns", True, str(exc)) from None
    frame = read_events(result.run_dir)
    parquet = result.run_dir / "measurements.parquet"
    write_parquet(frame, parquet, config_json(result.run_dir), __version__)
    summary = {"ok": result.ok, "message": result.message, "wall_s": round(result.wall_s, 2),
               "machine_replacements": result.machine_replacements,
               "failures_fired": len(list((result.run_dir / "faults").glob("fired*.json"))),
               **summarize(frame)}  # fmt: skip
    print(json.dumps(summary, indent=2))
    print(f"measurements: {parquet}")
    return 0 if result.ok else 1
