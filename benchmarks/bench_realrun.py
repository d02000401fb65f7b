"""Benchmark of the real runner's checkpoint engine, each figure against a reference from the same run.

  snapshot     copy of a rank's shard into shared memory       vs  memcpy bandwidth (libc, one core)
  replication  shard sent to a peer and verified (gloo)        vs  raw gloo send/recv bandwidth
  recovery     restart from local memory                       vs  DCP load from fsynced disk, cold and warm cache
  overhead     iteration time, checkpoint every iteration      vs  the same iterations without checkpoints
  tracking     iteration time while the launcher tracks them   vs  the same iterations untracked (alternating blocks)

Usage: python benchmarks/bench_realrun.py [--gib 1.0] [--parallelism fsdp|ddp] [--pairs 12] [--track-pairs 6]
[--track wandb] [--only-tracking]. The model is the real GPT sized so its shard (fp32 weights + AdamW m, v)
is about --gib; one rank holds the whole shard (FSDP2 on a mesh of one: the shard is hundreds of
per-parameter local tensors, as FSDP2 holds them; ddp: ZeRO-1's one bucket). The persistent checkpoint's
training stall, synchronous against asynchronous, is benchmarks/bench_persist.py.
Run as root, the cold-cache recovery drops the machine's page cache (/proc/sys/vm/drop_caches) and
says so; otherwise it evicts only the checkpoint's files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import socket
import statistics
import tempfile
import time
import timeit
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gemini_ft.realrun.config import RealRunConfig, parse_model_size
from gemini_ft.realrun.engine import replication
from gemini_ft.realrun.engine.backup import load_into, save_persistent
from gemini_ft.realrun.engine.checkpointer import Checkpointer
from gemini_ft.realrun.engine.checksums import CHECKSUM_CHUNK, chunk_checksums
from gemini_ft.realrun.engine.config import CheckpointConfig, RecoveryConfig
from gemini_ft.realrun.engine.manifest import Manifest, build_layout
from gemini_ft.realrun.engine.recovery import plan_recovery, recover
from gemini_ft.realrun.engine.replication import CommittedShard, Incoming, Outgoing, exchange
from gemini_ft.realrun.engine.shard import ShardCodec
from gemini_ft.realrun.engine.shm_store import ShmStore
from gemini_ft.realrun.engine.transport import GlooTransport
from gemini_ft.realrun.measurements import EventLog
from gemini_ft.realrun.testbed.tracking import POLL_S, JobTracker
from gemini_ft.realrun.worker.data import SyntheticStream
from gemini_ft.realrun.worker.model import build_model
from gemini_ft.realrun.worker.parallel import parallelize
from gemini_ft.realrun.worker.train import drop_page_cache

GIB = 1024**3
CHUNK_BYTES = int(RealRunConfig().chunk_mib * 2**20)  # the engine's default replication chunk


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _best(fn, repeats: int) -> float:
    return min(timeit.repeat(fn, number=1, repeat=repeats))


def _line(name: str, value: float, reference: float, unit: str, ref_name: str, target: str) -> None:
    print(
        f"{name:<34} {value:10.3f} {unit:<6} reference {ref_name} {reference:10.3f} {unit:<6} ratio {value / reference:6.3f}  ({target})"
    )


# ---- snapshot, local recovery, disk, overhead (one process, world size 1) ----------------------
def _train_step(module, stream: SyntheticStream, shape) -> None:
    inputs, targets = stream.next()
    logits = module(inputs)
    torch.nn.functional.cross_entropy(logits.reshape(-1, shape.vocab), targets.reshape(-1)).backward()


@dataclass
class _Rank:
    """One rank's training state (world size 1) and its checkpoint engine into shared memory."""

    shape: Any
    model: torch.nn.Module
    optimizer: Any
    codec: ShardCodec
    shm: ShmStore
    events: EventLog
    engine: Checkpointer
    stream: SyntheticStream


@contextlib.contextmanager
def _one_rank(gib: float, work: Path, parallelism: str) -> Iterator[_Rank]:
    """The real GPT sized so its shard is about `gib`, stepped once; torn down (memory, group) after."""
    store_ = dist.TCPStore("127.0.0.1", _free_port(), 1, True, timeout=timedelta(seconds=600))
    dist.init_process_group("gloo", store=store_, rank=0, world_size=1)
    shape = parse_model_size(str(int(gib * GIB / 12)))
    cfg = RealRunConfig(machines=1, replicas=1, parallelism=parallelism, lr=1e-4)
    stream = SyntheticStream(0, 0, 4, shape)
    par = parallelize(
        cfg, build_model(cfg.model, shape, 0), torch.device("cpu"), 0, [("data_position", stream.position)]
    )
    model, optimizer, codec = par.module, par.optimizer, par.codec
    _train_step(model, stream, shape)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    print(
        f"model: {shape.parameters / 1e6:.1f}M parameters, shard {codec.plan().nbytes / GIB:.3f} GiB, {torch.get_num_threads()} threads"
    )
    shm = ShmStore(Path("/dev/shm") / f"gemini-ft-bench-{os.getpid()}", machine=0)
    try:
        events = EventLog(work, "bench", 0, 0, time.time())
        engine = Checkpointer(CheckpointConfig(rank=0, chunk_bytes=CHUNK_BYTES), shm, codec, events)
        yield _Rank(shape, model, optimizer, codec, shm, events, engine, stream)
    finally:
        shm.wipe()
        shm.root.rmdir()
        dist.destroy_process_group()


def bench_single(gib: float, pairs: int, work: Path, track_pairs: int, track: str, parallelism: str) -> dict:
    with _one_rank(gib, work, parallelism) as rank:
        return _single(rank, pairs, work, track_pairs, track)


def bench_tracking(gib: float, work: Path, track_pairs: int, track: str, parallelism: str) -> dict:
    with _one_rank(gib, work, parallelism) as rank:
        return _tracking_overhead(rank, track_pairs, work, track)


def _single(rank: _Rank, pairs: int, work: Path, track_pairs: int, track: str) -> dict:
    shape, model, optimizer, codec = rank.shape, rank.model, rank.optimizer, rank.codec
    shm, events, engine = rank.shm, rank.events, rank.engine
    total = codec.plan().nbytes
    src = torch.empty(total, dtype=torch.uint8).fill_(1)
    dst = torch.empty(total, dtype=torch.uint8).fill_(0)
    # The reference (libc memcpy between two preallocated, touched buffers, as numpy's copyto
    # calls it; torch's copy_ would split it over threads) alternates with the
    # snapshots, so both see the same machine; the first two snapshots also map the two slots.
    memcpy_times, copy_times, full_times = [], [], []
    for step in range(1, 7):
        memcpy_times.append(_best(partial(np.copyto, dst.numpy(), src.numpy()), 1))
        start = time.perf_counter()
        engine.snapshot(step)
        engine.wait_copied()
        copied = time.perf_counter() - start
        engine.wait_done()
        if step > 2:
            copy_times.append(copied)
            full_times.append(time.perf_counter() - start)
    del src, dst
    memcpy_s = min(memcpy_times)
    snapshot_s, committed_s = min(copy_times), min(full_times)

    recovery = RecoveryConfig(
        rank=0, world_size=1, procs_per_machine=1, run_dir=work, chunk_bytes=CHUNK_BYTES
    )

    def local_recovery() -> None:
        plan = plan_recovery(recovery, shm, None)
        assert plan.source == "memory"
        recover(plan, recovery, shm, codec, GlooTransport(), events)

    local_s = _best(local_recovery, 3)
    disk = work / "dcp"
    start = time.perf_counter()
    save_persistent(codec, 0, disk, 0, 1, "bench")
    disk_save_s = time.perf_counter() - start
    dropped = _drop_caches(disk)
    start = time.perf_counter()
    load_into(codec, 0, disk, 0, 1)
    cold_s = time.perf_counter() - start
    warm_s = _best(lambda: load_into(codec, 0, disk, 0, 1), 2)

    def iteration(checkpoint: bool, step: int) -> float:
        start = time.perf_counter()
        _train_step(model, rank.stream, shape)
        engine.wait_copied()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if checkpoint:
            engine.snapshot(step)
        return time.perf_counter() - start

    # Pairs of iterations: one without a checkpoint, then one that overlaps the snapshot of the
    # state before it (the steady state of checkpointing every iteration) and launches its own.
    # The overhead is the median ratio within pairs: this VM's speed drifts by more than the
    # effect over tens of seconds, but hardly between two neighbouring iterations.
    plain, with_ckpt = [], []
    step = 100
    for _ in range(pairs):
        engine.wait_done()
        plain.append(iteration(False, step := step + 1))
        engine.snapshot(step)
        with_ckpt.append(iteration(True, step := step + 1))
    engine.wait_done()
    tracking = _tracking_overhead(rank, track_pairs, work, track)
    return {
        "bytes": total, "regions": len(codec.plan().regions), "memcpy_s": memcpy_s, "snapshot_s": snapshot_s, "committed_s": committed_s,
        "local_s": local_s, "disk_save_s": disk_save_s, "cold_s": cold_s, "warm_s": warm_s,
        "cache_dropped": dropped, "plain_s": statistics.median(plain), "ckpt_s": statistics.median(with_ckpt),
        "overhead": statistics.median(c / p for c, p in zip(with_ckpt, plain, strict=True)) - 1,
        **tracking,
    }  # fmt: skip


def _launcher_tracking(run_dir: Path, kind: str, ready, stop) -> None:
    """What the launcher does with `--track` (in a process of its own, as the launcher is): follow
    `run_dir`'s events until `stop`, then drain them; exit 1 if the tracker failed or dropped records."""
    job = JobTracker(RealRunConfig(out=run_dir, track=kind), "bench", time.time())
    job.tracker.flush(timeout_s=120)  # the backend is open (its imports done) before anything is timed
    ready.set()
    stop.wait()
    raise SystemExit(0 if job.close() else 1)


def _cpu_s(pid: int) -> float:
    """User + system CPU time of process `pid`, all its threads (Linux /proc, clock-tick resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tracking_overhead(rank: _Rank, pairs: int, work: Path, kind: str) -> dict:
    """Checkpointed iterations in blocks that the launcher's tracking follows or does not, alternating.

    The workers do the same in both (their events and loss are written either way); what tracking
    adds is the launcher reading those events and the tracker writing them, on the same cores. So a
    tracking process follows one events directory and the iterations log into it (tracked) or into
    another that nobody reads (untracked). It polls every POLL_S, so blocks last several polls and
    each ends with a pause long enough for it to catch up (untimed), and a block's cost is its total,
    not its median (the cost lands on whichever iterations a poll happens to overlap). The tracking
    process's CPU time over the tracked blocks (pauses included), per tracked iteration, bounds what
    it can take from training at all (a W&B service process's own CPU time is not counted).
    """
    engine, model, optimizer, shape = rank.engine, rank.model, rank.optimizer, rank.shape
    logs = {
        on: EventLog(work / ("tracked" if on else "untracked"), "bench", 0, 0, time.time())
        for on in (False, True)
    }
    context = mp.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    follower = context.Process(target=_launcher_tracking, args=(work / "tracked", kind, ready, stop))
    follower.start()
    ready.wait(180)
    previous = engine.events
    step = 1000

    def iteration(on: bool) -> float:
        nonlocal step
        engine.wait_done()
        engine.events = logs[on]  # the snapshot's and commit's events go where the step's go
        start = time.perf_counter()
        step += 1
        inputs, targets = rank.stream.next()
        loss = torch.nn.functional.cross_entropy(model(inputs).reshape(-1, shape.vocab), targets.reshape(-1))
        loss.backward()
        engine.wait_copied()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        engine.snapshot(step)
        duration = time.perf_counter() - start
        logs[on].log("step", step, duration_s=duration, loss=loss.item())
        return duration

    block = max(1, math.ceil(4 * POLL_S / statistics.median(iteration(False) for _ in range(3))))
    ratios, totals, cpu = [], {False: 0.0, True: 0.0}, {False: 0.0, True: 0.0}
    try:
        for pair in range(pairs):
            spent = {}
            for on in (False, True) if pair % 2 == 0 else (True, False):  # a steady drift cancels out
                before = _cpu_s(follower.pid)
                spent[on] = sum(iteration(on) for _ in range(block))
                engine.wait_done()
                time.sleep(2 * POLL_S)  # the tracker reads and writes this block's records before the next
                totals[on] += spent[on]
                cpu[on] += _cpu_s(follower.pid) - before
            ratios.append(spent[True] / spent[False])
    finally:
        engine.events = previous
        stop.set()
        follower.join(120)
    if follower.exitcode != 0:
        raise RuntimeError(f"the tracking process failed or dropped records (exit {follower.exitcode})")
    iterations = pairs * block
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {"untracked_s": totals[False] / iterations, "tracked_s": totals[True] / iterations,
            "tracking_overhead": statistics.median(ratios) - 1, "tracking_block": block,
            "tracking_quartiles": (quartiles[0] - 1, quartiles[2] - 1),
            "tracking_cpu_s": cpu[True] / iterations, "idle_cpu_s": cpu[False] / iterations}  # fmt: skip


def _tracking_lines(result: dict, kind: str, pairs: int) -> None:
    low, high = result["tracking_quartiles"]
    _line(
        f"iteration tracked ({kind}) (s)", result["tracked_s"], result["untracked_s"], "s", "untracked",
        f"median of {pairs} block pairs ({result['tracking_block']} iterations each) "
        f"{result['tracking_overhead']:+.2%}, quartiles {low:+.2%} .. {high:+.2%}; target <= +0.5%",
    )  # fmt: skip
    _line(
        "tracking CPU per iteration (s)", result["tracking_cpu_s"], result["untracked_s"], "s",
        "iteration", f"the launcher's tracking process on any core, an upper bound of its cost; "
        f"{result['idle_cpu_s']:.4f} s while it has nothing to read",
    )  # fmt: skip


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def _drop_caches(path: Path, proc_file: Path = DROP_CACHES) -> str:
    """Make the disk baseline's next load cold; says what it does, since it touches the whole machine.

    As root it writes 3 to /proc/sys/vm/drop_caches (drops every clean page cache and slab on this
    machine); otherwise it leaves that file alone and evicts only the checkpoint's files.
    """
    if os.geteuid() != 0:
        print(
            f"page cache: not root, so not writing {proc_file}; evicting only the checkpoint files "
            "(posix_fadvise DONTNEED) for the cold disk load"
        )
        return "fadvise" if drop_page_cache(path) else "not dropped"
    print(
        f"page cache: writing 3 to {proc_file} (drops this machine's whole page cache) so the disk "
        "baseline's cold load reads from disk, not from memory"
    )
    try:
        os.sync()
        proc_file.write_text("3\n")
        return "drop_caches"
    except OSError as error:
        print(f"page cache: {proc_file} refused ({error}); evicting only the checkpoint files instead")
        return "fadvise" if drop_page_cache(path) else "not dropped"


# ---- replication (two processes, gloo on loopback) -------------------------------------------
def _replication_worker(
    rank: int, port: int, nbytes: int, result: str, repeats: int, in_flight: int | None
) -> None:
    if in_flight is not None:
        replication.IN_FLIGHT = in_flight
    store_ = dist.TCPStore("127.0.0.1", port, 2, rank == 0, timeout=timedelta(seconds=600))
    dist.init_process_group("gloo", store=store_, rank=rank, world_size=2)
    shm = ShmStore(Path("/dev/shm") / f"gemini-ft-bench-{port}", machine=rank)
    try:
        raw = torch.empty(nbytes, dtype=torch.uint8).fill_(rank)
        sends, recvs = [], [Incoming(0, 0)] if rank == 1 else []
        if rank == 0:
            entries, total = build_layout([("param/w", "uint8", (nbytes,), nbytes)])
            slot, buffer = shm.begin(0, total)
            torch.frombuffer(buffer, dtype=torch.uint8).fill_(7)
            checksums = tuple(chunk_checksums(buffer))
            manifest = Manifest(0, 1, total, CHECKSUM_CHUNK, checksums, tuple(entries))
            shm.commit(slot, manifest)
            sends = [Outgoing(1, CommittedShard(manifest, buffer))]
        # Raw transfers (the reference) alternate with replication rounds so both see the same
        # machine; the first two rounds also map the receiver's two slots.
        raw_times, times = [], []
        for round_ in range(repeats + 2):
            dist.barrier()
            start = time.perf_counter()
            dist.send(raw, 1) if rank == 0 else dist.recv(raw, 0)
            if round_ >= 2:  # the same rounds as the replication's, so both take a minimum over as many
                raw_times.append(time.perf_counter() - start)
            dist.barrier()
            start = time.perf_counter()
            received = exchange(shm, GlooTransport(), sends, recvs, CHUNK_BYTES)
            if round_ >= 2:
                times.append(time.perf_counter() - start)
            assert all(r.ok for r in received)
        if rank == 1:
            Path(result).write_text(json.dumps({"raw_s": min(raw_times), "replicate_s": min(times)}))
    finally:
        shm.wipe()
        if rank == 0:
            dist.barrier()
            shm.root.rmdir()
        else:
            dist.barrier()
        dist.destroy_process_group()


def bench_replication(nbytes: int, work: Path, in_flight: int | None = None) -> dict:
    result = work / "replication.json"
    mp.spawn(_replication_worker, args=(_free_port(), nbytes, str(result), 4, in_flight), nprocs=2, join=True)
    return json.loads(result.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gib", type=float, default=1.0, help="checkpoint state size in GiB (default 1)")
    parser.add_argument(
        "--parallelism", choices=("fsdp", "ddp"), default="fsdp", help="how the shard is held"
    )
    parser.add_argument(
        "--pairs", type=int, default=12, help="overhead: iteration pairs without/with checkpoint"
    )
    parser.add_argument(
        "--track-pairs", type=int, default=6, help="tracking: block pairs untracked/tracked (default 6)"
    )
    parser.add_argument(
        "--track", choices=("tensorboard", "wandb"), default="tensorboard", help="tracking: the tracker"
    )
    parser.add_argument(
        "--only-tracking", action="store_true", help="run only the tracking comparison (no other section)"
    )
    parser.add_argument(
        "--in-flight", type=int, default=None, help="replication chunks in flight (default: the engine's)"
    )
    args = parser.parse_args()
    if args.only_tracking:  # a minute or two, and leaves the page cache alone
        with tempfile.TemporaryDirectory(prefix="bench-realrun-") as tmp:
            _tracking_lines(
                bench_tracking(args.gib, Path(tmp), args.track_pairs, args.track, args.parallelism),
                args.track,
                args.track_pairs,
            )
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-realrun-") as tmp:
        work = Path(tmp)
        single = bench_single(args.gib, args.pairs, work, args.track_pairs, args.track, args.parallelism)
        nbytes = single["bytes"]
        replication = bench_replication(nbytes, work, args.in_flight)
    gb = nbytes / 1e9
    print(f"{args.parallelism}: state per rank {nbytes / GIB:.3f} GiB in {single['regions']} regions;"
          f" page cache: {single['cache_dropped']}")  # fmt: skip
    _line(
        "snapshot copy (GB/s)",
        gb / single["snapshot_s"],
        gb / single["memcpy_s"],
        "GB/s",
        "memcpy",
        "target >= 0.70",
    )
    _line(
        "snapshot+checksum+commit (GB/s)",
        gb / single["committed_s"],
        gb / single["memcpy_s"],
        "GB/s",
        "memcpy",
        "off the critical path",
    )
    _line(
        "replication (GB/s)",
        gb / replication["replicate_s"],
        gb / replication["raw_s"],
        "GB/s",
        "gloo p2p",
        "target >= 0.80",
    )
    _line(
        "recovery cold: disk / local (s)", single["cold_s"], single["local_s"], "s", "local", "target >= 10"
    )
    _line(
        "recovery warm: disk / local (s)",
        single["warm_s"],
        single["local_s"],
        "s",
        "local",
        "warm page cache",
    )
    _line(
        "DCP save fsynced (GB/s)",
        gb / single["disk_save_s"],
        gb / single["memcpy_s"],
        "GB/s",
        "memcpy",
        "disk baseline",
    )
    overhead = single["overhead"]
    _line(
        "iteration with ckpt every step (s)",
        single["ckpt_s"],
        single["plain_s"],
        "s",
        "no ckpt",
        f"median of pairs {overhead:+.1%}, target <= +5%",
    )
    _tracking_lines(single, args.track, args.track_pairs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
