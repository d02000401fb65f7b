"""The training entry point launched by torchrun: a GPT or Llama model under FSDP2, HSDP or DDP + ZeRO-1,
checkpointed in memory.

Each worker joins the job with a stable logical rank (machine × procs + local rank, so a machine's
shared memory always holds the same shards), recovers from the newest complete in-memory checkpoint
(or the persistent one), trains to `--steps`, snapshots every `ckpt_every` steps and persists every
`persist_every`. Run `python -m gemini_ft.realrun.worker.train --config run/config.json` under torchrun; the
launcher sets GEMINI_FT_MACHINE, GEMINI_FT_SHM and GEMINI_FT_T0 (the same works on a real cluster).
The worker wires the engine (`gemini_ft.realrun.engine`) from the run's config: a `CheckpointConfig` and a
`RecoveryConfig` for this rank, and the gloo checkpoint group as its shard transport.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from gemini_ft.placement.layout import build_placement
from gemini_ft.realrun.config import RealRunConfig, parse_model_size
from gemini_ft.realrun.devices import TESTBED_ENV, device_for, gpu_sharing, visible_gpus
from gemini_ft.realrun.engine.backup import load_into, save_persistent
from gemini_ft.realrun.engine.checkpointer import Checkpointer
from gemini_ft.realrun.engine.config import CheckpointConfig, RecoveryConfig
from gemini_ft.realrun.engine.recovery import plan_recovery, recover, report_rejections
from gemini_ft.realrun.engine.shard import ShardCodec
from gemini_ft.realrun.engine.shm_store import ShmStore
from gemini_ft.realrun.engine.transport import GlooTransport
from gemini_ft.realrun.faults import FaultInjector, parse_failures
from gemini_ft.realrun.final_params import write_final_params
from gemini_ft.realrun.markers import last_failure_time, newest_failure
from gemini_ft.realrun.measurements import EventLog, write_engine_info
from gemini_ft.realrun.worker.data import SyntheticStream
from gemini_ft.realrun.worker.model import build_model
from gemini_ft.realrun.worker.parallel import Parallel, parallelize
from gemini_ft.realrun.worker.persisting import Persistence


def checkpoint_config(
    cfg: RealRunConfig, rank: int, shard_bytes: list[int] | None = None
) -> CheckpointConfig:
    """The engine's view of the run for `rank`: its peers from gemini_ft.placement.layout (the shard of (machine,
    local) goes to the same local rank on each holder), each received shard's size (`shard_bytes`, by
    rank, when known), the chunk size and the GPU snapshot policy."""
    placement = build_placement(cfg.placement, cfg.machines, cfg.replicas)
    procs = cfg.procs_per_machine
    machine, local = divmod(rank, procs)
    receive_from = tuple(owner * procs + local for owner in placement.stored_on(machine)[1:])
    return CheckpointConfig(
        rank=rank,
        send_to=tuple(peer * procs + local for peer in placement.peers_of(machine)),
        receive_from=receive_from,
        receive_bytes=tuple(shard_bytes[src] for src in receive_from) if shard_bytes else (),
        chunk_bytes=cfg.chunk_bytes,
        gpu_snapshot=cfg.gpu_snapshot,
    )


def recovery_config(cfg: RealRunConfig, rank: int, par: Parallel) -> RecoveryConfig:
    return RecoveryConfig(
        rank=rank,
        world_size=cfg.world_size,
        procs_per_machine=cfg.procs_per_machine,
        run_dir=cfg.out,
        chunk_bytes=cfg.chunk_bytes,
        layouts=par.layouts,
        twins=par.twins,
    )


def _train_step(
    cfg: RealRunConfig, par: Parallel, stream: SyntheticStream, vocab: int, device: torch.device,
    checkpointer: Checkpointer,
) -> torch.Tensor:  # fmt: skip
    """Forward and backward over `grad_accum` micro-batches (gradients reduced on the last), then the
    clipping; returns the step's mean loss. The optimizer steps after this."""
    total = torch.zeros((), device=device)
    for micro in range(cfg.grad_accum):
        inputs, targets = stream.batch(micro)
        last = micro == cfg.grad_accum - 1
        with contextlib.nullcontext() if last else par.no_sync(), par.autocast():
            logits = par.module(inputs.to(device))
            loss = (
                torch.nn.functional.cross_entropy(
                    logits.float().reshape(-1, vocab), targets.to(device).reshape(-1)
                )
                / cfg.grad_accum
            )
            loss.backward()
        total += loss.detach()
    checkpointer.wait_copied()  # the previous snapshot must be in memory before the state changes
    stream.advance(cfg.grad_accum)  # the data position is state too
    if cfg.clip_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(par.model.parameters(), cfg.clip_grad_norm)
    return total


def _join(cfg: RealRunConfig, rank: int, device: torch.device) -> int:
    """Init the default group with our logical rank; the launcher's store outlives every machine."""
    timeout = timedelta(seconds=cfg.timeout_s)
    if "GEMINI_FT_STORE" in os.environ:  # the local testbed: the launcher hosts the store
        host, _, port = os.environ["GEMINI_FT_STORE"].rpartition(":")
        store = dist.TCPStore(host, int(port), is_master=False, timeout=timeout)
    else:  # plain torchrun on a cluster: torchrun's store, or rank 0 hosts one
        agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        master = not agent_store and int(os.environ["RANK"]) == 0
        store = dist.TCPStore(
            os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=master, timeout=timeout
        )
    # Every round of torchrun restarts every worker, so a per-rank start counter names the round.
    generation = store.add(f"gemini-ft/{os.environ.get('TORCHELASTIC_RUN_ID', 'job')}/starts/{rank}", 1)
    prefixed = dist.PrefixStore(f"gemini-ft/round{generation}", store)
    # Ranks sharing one GPU (GEMINI_FT_GPU_SHARING=gloo) cannot use NCCL, which needs a device each.
    backend = "nccl" if device.type == "cuda" and not gpu_sharing() else "gloo"
    dist.init_process_group(
        backend,
        store=prefixed,
        rank=rank,
        world_size=cfg.world_size,
        timeout=timedelta(seconds=cfg.timeout_s),
    )
    return generation


def die_with_agent(poll_s: float = 0.5) -> None:
    """End this worker when its torchrun agent dies (a launcher killed with SIGKILL takes the agent
    along): a daemon thread watches the parent pid. No parent-death signal: torchrun may start
    workers from a thread that ends, and the kernel sends that signal when the parent thread does."""
    agent = os.getppid()

    def watch() -> None:
        while os.getppid() == agent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-agent", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    process_start = time.time()
    die_with_agent()
    # Checkpoints, events and final parameters are the job's alone (under plain torchrun too).
    os.umask(0o077)
    cfg = RealRunConfig.model_validate_json(args.config.read_text())
    machine = int(os.environ["GEMINI_FT_MACHINE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    rank = machine * cfg.procs_per_machine + local_rank
    # On the testbed all emulated machines share this host's GPUs; under plain torchrun, LOCAL_RANK.
    device = torch.device(
        device_for(
            cfg.device, machine, local_rank, cfg.procs_per_machine, visible_gpus(),
            shared_host=TESTBED_ENV in os.environ, sharing=gpu_sharing(),
        )
    )  # fmt: skip
    use_cuda = device.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(device)
        # A recovered run must end bit for bit equal to an uninterrupted one, also on a GPU: cuBLAS
        # needs a fixed workspace for that (set before its first call), and ops such as the embedding's
        # backward need their deterministic kernels. warn_only: an op without one warns in the worker's
        # log (and the bit-exact check says so) instead of failing the run.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    run_dir = cfg.out
    job, t0 = os.environ.get("GEMINI_FT_JOB", "job"), float(os.environ.get("GEMINI_FT_T0", process_start))
    # No tracking here: the launcher tracks the job from these files, so a dying worker loses nothing.
    events = EventLog(run_dir, job, rank, machine, t0)
    failed_at = last_failure_time(run_dir, process_start)
    if failed_at is not None:
        events.log("detect", -1, duration_s=process_start - failed_at)

    generation = _join(cfg, rank, device)
    ckpt_group = dist.new_group(backend="gloo")  # checkpoint traffic never queues behind gradients
    events.log("restart", -1, duration_s=time.time() - process_start)

    shape = parse_model_size(cfg.model_size, cfg.model)
    model = build_model(cfg.model, shape, cfg.seed).to(device)
    stream = SyntheticStream(cfg.seed, rank, cfg.batch_size, shape)
    par = parallelize(cfg, model, device, rank, extra=[("data_position", stream.position)])
    codec, optimizer = par.codec, par.optimizer
    store = ShmStore(os.environ["GEMINI_FT_SHM"], machine)
    faults = FaultInjector(
        parse_failures(list(cfg.failures), cfg.machines, cfg.procs_per_machine, cfg.steps),
        run_dir, rank=rank, machine=machine, local_rank=local_rank, procs=cfg.procs_per_machine,
    )  # fmt: skip
    transport = GlooTransport(ckpt_group)

    # Its persister process starts now: it imports torch while recovery runs.
    persistence = Persistence(cfg, rank, machine, codec, events, f"round{generation}", t0)
    fired = newest_failure(run_dir) if failed_at is not None else None
    if fired is not None:  # memory damaged while the workers restart, before anyone looks at it
        faults.on_restart(fired.step, store.dir)
    recovery = recovery_config(cfg, rank, par)
    try:
        plan = plan_recovery(recovery, store, ckpt_group)
        recover(plan, recovery, store, codec, transport, events)
    finally:  # a copy refused on the way is reported even when recovery fails and the job restarts
        report_rejections(store, events)
    if failed_at is not None:
        # The step column of a lost_steps event is the number of completed steps that must be redone.
        events.log("lost_steps", max(0, fired.step - 1 - plan.step) if fired else 0)

    # Every shard's size, once: a replica's header that announces another is refused unallocated.
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(cfg.world_size)]
    dist.all_gather(sizes, torch.tensor([codec.plan().nbytes], dtype=torch.int64), group=ckpt_group)
    shard_bytes = [int(size) for size in sizes]
    checkpointer = Checkpointer(
        checkpoint_config(cfg, rank, shard_bytes), store, codec, events, transport, faults
    )
    persistence.after_recovery(plan, checkpointer)
    first = True
    for step in range(plan.step + 1, cfg.steps + 1):
        if faults.any_due(step):
            # A failure "at step s" strikes after step s − 1's checkpoint is fully out, in memory, on
            # its peers and in storage, on every rank (they all meet first: a peer may still be
            # receiving what this rank sent, another rank's persister still writing its part), so the
            # outcome does not depend on how fast any of it went.
            checkpointer.wait_done()
            persistence.settle()
            dist.barrier(group=ckpt_group)
            faults.check(step, "step")
        start = time.perf_counter()
        loss = _train_step(cfg, par, stream, shape.vocab, device, checkpointer)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % cfg.ckpt_every == 0:
            persistence.before_snapshot(step)
            checkpointer.snapshot(step)
        if persistence.due(step):
            persistence.persist(step, checkpointer)
        if use_cuda:
            # Kernels run asynchronously: wait for this step's on the training stream (not the copy
            # stream, whose device-to-host transfer may rightly still run) before reading the clock.
            torch.cuda.current_stream(device).synchronize()
        duration = time.perf_counter() - start
        # Read after the clock; on CUDA the stream is already synchronized, so this only copies 4 bytes.
        kind = "first_step" if first and plan.source != "fresh" else "step"
        events.log(kind, step, duration_s=duration, loss=loss.item())
        first = False
    checkpointer.close()
    persistence.close()
    write_engine_info(
        run_dir, rank,
        {"device": str(device), "path": checkpointer.path, "skipped": checkpointer.skipped,
         "parallelism": cfg.parallelism, "dtype": cfg.dtype, "shard_bytes": codec.plan().nbytes,
         "bytes_per_parameter": round(par.shard_bytes_per_parameter(), 3)},
    )  # fmt: skip
    _write_final(run_dir, rank, model)
    if cfg.disk_baseline:
        _disk_baseline(codec, rank, run_dir, cfg.steps, events)
    dist.barrier()
    dist.destroy_process_group()
    store.close()
    return 0


def _write_final(run_dir: Path, rank: int, model: torch.nn.Module) -> None:
    """The final parameters as flat bytes with an index (rank 0), so runs can be compared bit for bit.
    A sharded parameter is gathered whole first (a collective: every rank takes part)."""
    state = {
        name: value.full_tensor() if isinstance(value, DTensor) else value
        for name, value in model.state_dict().items()
    }
    if rank == 0:
        write_final_params(run_dir, state)


def _disk_baseline(codec: ShardCodec, rank: int, run_dir: Path, step: int, events: EventLog) -> None:
    """DCP save (fsynced) and load of the same shard state, the cache dropped before the load."""
    path = run_dir / "disk_baseline"
    start = time.perf_counter()
    nbytes = save_persistent(codec, rank, path, step, dist.get_world_size(), "disk-baseline")
    events.log("disk_save", step, nbytes=nbytes, duration_s=time.perf_counter() - start, source="disk")
    dist.barrier()
    drop_page_cache(path)
    dist.barrier()
    start = time.perf_counter()
    load_into(codec, rank, path, step, dist.get_world_size())
    events.log("disk_load", step, nbytes=nbytes, duration_s=time.perf_counter() - start, source="disk")


def drop_page_cache(path: Path) -> bool:
    """Evict `path`'s files from the page cache (posix_fadvise DONTNEED); True if all were evicted."""
    ok = True
    for file in [p for p in Path(path).rglob("*") if p.is_file() and not p.is_symlink()]:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            ok = False
        finally:
            os.close(fd)
    return ok


if __name__ == "__main__":
    raise SystemExit(main())
