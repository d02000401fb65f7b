"""Benchmark of a persistent checkpoint's training stall: synchronous dcp.save against the asynchronous
path (the rank's persister process writing from shared memory), measured in the same run.

  sync    the iteration that persists with dcp.save (every rank's part, fsynced; training waits),
          less the median plain iteration
  async   every iteration while the persister copies and writes the same checkpoint, less the median
          plain iteration, summed: the handoff plus whatever the background write takes from training
          (CPU, memory bandwidth) on this machine

A checkpoint is taken in memory every iteration, as in the real runner, and each persistent checkpoint is
of the step just snapshotted. Target: async <= 0.1 x sync. One rank (a mesh of one) holds the whole
shard, the real GPT sized so the shard is about --gib. Training computes on --trainer-threads cores
(default: all but one): on a GPU host the CPU has cores to spare for the write, on this CPU-only host a
trainer on every core leaves the write none, and any background work then slows training by what it takes.

Usage: python benchmarks/bench_persist.py [--gib 0.25] [--rounds 5] [--parallelism fsdp|ddp]
[--trainer-threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a script beside bench_realrun, not a package
from bench_realrun import GIB, _one_rank, _train_step

from gemini_ft.realrun.engine.backup import save_persistent
from gemini_ft.realrun.engine.persistent import committed_steps, persistent_dir
from gemini_ft.realrun.engine.persister import Persister, PersisterConfig


def measure(gib: float, rounds: int, parallelism: str, work: Path) -> dict:
    with _one_rank(gib, work, parallelism) as rank:
        engine, codec, optimizer = rank.engine, rank.codec, rank.optimizer
        persister = Persister(
            PersisterConfig(str(rank.shm.root), 0, 0, 1, str(work), "bench", time.time(), 600.0)
        )
        step = 0

        def iteration(persist: str | None = None) -> float:
            nonlocal step
            step += 1
            start = time.perf_counter()
            _train_step(rank.model, rank.stream, rank.shape)
            engine.wait_copied()
            rank.stream.advance(1)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            persister.wait_copied(before=step - 1)  # this snapshot reuses that one's slot
            engine.snapshot(step)
            if persist == "sync":
                save_persistent(codec, 0, persistent_dir(work, step), step, 1, "bench")
            elif persist == "async":
                persister.request(step, 0, "bench")
            return time.perf_counter() - start

        for _ in range(3):  # warm-up: both slots mapped, the persister started and torch imported
            iteration()
        persister.request(step, 0, "bench")
        persister.wait_idle()
        plain, sync, overlapped = [], [], []
        for _ in range(rounds):
            plain += [iteration() for _ in range(3)]
            sync.append(iteration("sync"))
            plain += [iteration() for _ in range(3)]
            durations = [iteration("async")]
            while persister.busy():  # every iteration the background write overlaps
                durations.append(iteration())
            overlapped.append(durations)
        persister.close()
        engine.wait_done()
        base = statistics.median(plain)
        return {
            "bytes": codec.plan().nbytes,
            "plain_s": base,
            "sync_stall_s": statistics.median(s - base for s in sync),
            "async_stall_s": statistics.median(sum(d - base for d in ds) for ds in overlapped),
            "async_iterations": statistics.median(len(ds) for ds in overlapped),
            "committed": len(committed_steps(work)),
        }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gib", type=float, default=0.25, help="checkpoint state size in GiB (default 0.25)")
    parser.add_argument("--rounds", type=int, default=5, help="sync and async checkpoints each (default 5)")
    parser.add_argument("--parallelism", choices=("fsdp", "ddp"), default="fsdp")
    parser.add_argument(
        "--trainer-threads", type=int, default=max(1, len(os.sched_getaffinity(0)) - 1),
        help="torch threads of the training rank (default: the cores this process may use, less one)",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.trainer_threads)
    with tempfile.TemporaryDirectory(prefix="bench-persist-") as tmp:
        result = measure(args.gib, args.rounds, args.parallelism, Path(tmp))
    ratio = result["async_stall_s"] / result["sync_stall_s"]
    print(f"{args.parallelism}: shard {result['bytes'] / GIB:.3f} GiB, plain iteration {result['plain_s']:.3f} s"
          f" on {args.trainer_threads} thread(s) of {len(os.sched_getaffinity(0))} cores,"
          f" {result['committed']} persistent checkpoints committed")  # fmt: skip
    print(f"sync dcp.save stall                {result['sync_stall_s']:.4f} s")
    print(f"async stall (over {result['async_iterations']:g} iterations)   {result['async_stall_s']:.4f} s")
    verdict = "meets" if ratio <= 0.1 else "MISSES"
    print(f"async / sync                       {ratio:.3f}  (target <= 0.10: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
