"""Soak test of the real runner: seeded random failure schedules, each checked bit for bit.

Each schedule draws a topology (placement group/ring/mixed, replicas, machines, processes per
machine, chunk size) and a failure kind: a software or hardware failure, one during a snapshot or a
replication, several machines at one step, a whole replica group lost (persistent fallback), or a
persistent checkpoint damaged during the run before everything is lost (it must be refused, and the
run fall back to an older one or a fresh start), or a copy in shared memory damaged while the workers
restart after a failure (the machine's own shard or a replica it holds, whichever slot holds the newest
copy; a flipped bit, random bytes, a truncated or deleted data file, an unreadable manifest): it must be
refused and counted, and the run recover from another copy. Every run must end with the parameters of an
uninterrupted run of the same topology, within its time limit, leaving no shared memory and no
process behind. Prints one table.

Usage: python benchmarks/soak_realrun.py --schedules 20 [--seed 0] [--out DIR] [--time-limit 300]
[--max-machines 4] [--device cpu] [--parallelism fsdp,hsdp,ddp] [--kinds ...]. Each schedule draws its
parallelism from --parallelism (hsdp: two ranks per machine, so a machine is a shard group). Without --out the
run directories live in a temporary directory, and those of schedules with a problem are kept in
./soak-problems/. Exit status 0 only if every schedule was bit-exact, nothing was left behind and every damaged
checkpoint, persistent or in memory, was refused.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gemini_ft.placement.layout import build_placement
from gemini_ft.realrun.config import RealRunConfig
from gemini_ft.realrun.faults import MEMORY_DAMAGE
from gemini_ft.realrun.measurements import read_events
from gemini_ft.realrun.testbed.launcher import launch

STEPS = 8
PERSIST_EVERY = 3
KINDS = (
    "sw", "hw", "sw-snapshot", "hw-replicate", "several", "group-lost", "disk-then-lost", "random", "mem-damage",
)  # fmt: skip
SEVERITY = {"local": 0, "peer": 1, "persistent": 2, "fresh": 3}


@dataclass
class Tally:
    """What the schedules did, summed."""

    schedules: int = 0
    failures: int = 0
    recoveries: Counter = field(default_factory=Counter)
    bit_exact: int = 0
    completed: int = 0
    hangs: int = 0
    leftovers: int = 0
    damaged: int = 0
    refused: int = 0
    memory_damaged: int = 0
    memory_refused: int = 0
    problems: list[str] = field(default_factory=list)


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM stop the soak between or during runs, and it still prints its table.

    A shell starts a background job with SIGINT ignored, and Python then installs no Ctrl-C handler
    of its own; SIGTERM's default ends the process before any table. Both raise KeyboardInterrupt
    here, which the launcher answers by cleaning up its run and re-raising.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signum)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def draw_topology(
    rng: np.random.Generator, max_machines: int, parallelisms: tuple[str, ...] = ("fsdp",)
) -> dict:
    parallelism = str(rng.choice(parallelisms))
    # hsdp: two machines of two ranks, so each machine is a shard group and the other its replica.
    machines = 2 if parallelism == "hsdp" else int(rng.integers(2, max_machines + 1))
    replicas = int(rng.integers(2, min(3, machines) + 1))
    placement = str(rng.choice(["group", "ring", "mixed"]))
    if placement == "group" and machines % replicas:
        placement = "mixed"
    procs = 2 if parallelism == "hsdp" else int(rng.choice([1, 2])) if machines == 2 else 1  # ≤ 4 ranks here
    chunk = float(rng.choice([0.01, 0.05, 4.0]))
    return {
        "machines": machines,
        "replicas": replicas,
        "placement": placement,
        "procs": procs,
        "chunk": chunk,
        "parallelism": parallelism,
    }


def draw_failures(rng: np.random.Generator, kind: str, topo: dict) -> list[str]:
    machines, world = topo["machines"], topo["machines"] * topo["procs"]
    step = int(rng.integers(2, STEPS + 1))
    if kind == "sw":
        return [f"sw@step={step}:rank={rng.integers(world)}"]
    if kind == "hw":
        return [f"hw@step={step}:machine={rng.integers(machines)}"]
    if kind == "sw-snapshot":
        return [f"sw@step={step}:rank={rng.integers(world)}:during=snapshot"]
    if kind == "hw-replicate":
        return [f"hw@step={step}:machine={rng.integers(machines)}:during=replicate"]
    if kind == "several":
        hit = rng.choice(machines, size=2, replace=False)
        return [f"hw@step={step}:machine={hit[0]}", f"sw@step={step}:rank={hit[1] * topo['procs']}"]
    if kind == "group-lost":  # every holder of every shard: only the persistent checkpoint is left
        return [f"hw@step={max(step, PERSIST_EVERY + 1)}:machine={m}" for m in range(machines)]
    if kind == "disk-then-lost":  # the newest persistent checkpoint is damaged, then memory is lost
        # No persistent save between the damage and the loss (persist after steps 3, 6), so the
        # damaged checkpoint is the newest one recovery finds: it must be refused.
        lost = int(rng.choice([5, 6, 8]))
        how = str(rng.choice(["flip", "truncate", "metadata", "missing"]))
        return [f"disk@step={lost - 1}:how={how}", *[f"hw@step={lost}:machine={m}" for m in range(machines)]]
    if kind == "mem-damage":  # a failure, and a copy in memory damaged while the workers restart
        return memory_damage(rng, step, topo)
    return [f"random:count=2:seed={rng.integers(1 << 20)}"]


def memory_damage(rng: np.random.Generator, step: int, topo: dict) -> list[str]:
    """A software or hardware failure at `step` and damage to a copy some other machine holds."""
    machines, procs = topo["machines"], topo["procs"]
    placement = build_placement(topo["placement"], machines, topo["replicas"])
    if rng.random() < 0.5:
        failure, spared = f"sw@step={step}:rank={rng.integers(machines * procs)}", None
    else:
        spared = int(rng.integers(machines))
        failure = f"hw@step={step}:machine={spared}"
    machine = int(rng.choice([m for m in range(machines) if m != spared]))
    owner = int(rng.choice(placement.stored_on(machine)))  # its own shard first, then those it holds
    shard = owner * procs + int(rng.integers(procs))
    how = str(rng.choice(MEMORY_DAMAGE))
    return [failure, f"mem@step={step}:machine={machine}:shard={shard}:how={how}"]


def config(topo: dict, out: Path, failures: list[str], time_limit: float, device: str) -> RealRunConfig:
    return RealRunConfig(
        machines=topo["machines"], procs_per_machine=topo["procs"], placement=topo["placement"],
        replicas=topo["replicas"], steps=STEPS, persist_every=PERSIST_EVERY, chunk_mib=topo["chunk"],
        failures=tuple(failures), out=out, port=_free_port(), disk_baseline=False, time_limit_s=time_limit,
        device=device, parallelism=topo["parallelism"],
    )  # fmt: skip


def recoveries(run_dir: Path) -> list[str]:
    """The source of each recovery: every rank logs one retrieve per round; the worst rank's counts."""
    frame = read_events(run_dir)
    rows = frame[frame.event == "retrieve"]
    per_rank = [list(group.sort_values("t_s").source) for _, group in rows.groupby("rank")]
    rounds = max((len(r) for r in per_rank), default=0)
    return [max((r[k] for r in per_rank if k < len(r)), key=SEVERITY.__getitem__) for k in range(rounds)]


def leftovers(job_id: str, run_dir: Path) -> list[str]:
    found = [str(p) for p in Path("/dev/shm").glob(f"gemini-ft-{job_id}*")]
    config_path = str(run_dir / "config.json").encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if config_path in (proc / "cmdline").read_bytes():
                    found.append(f"pid {proc.name}")
            except OSError:
                continue
    return found


def run_schedule(
    index: int,
    rng: np.random.Generator,
    work: Path,
    refs: dict,
    tally: Tally,
    limit: float,
    max_machines: int,
    device: str,
    kinds: tuple[str, ...] = KINDS,
    parallelisms: tuple[str, ...] = ("fsdp",),
    keep: Path | None = None,
) -> str:
    topo = draw_topology(rng, max_machines, parallelisms)
    kind = kinds[index % len(kinds)] if index < len(kinds) else str(rng.choice(kinds))
    failures = draw_failures(rng, kind, topo)
    key = (topo["machines"], topo["procs"], topo["parallelism"])
    if key not in refs:
        ref_dir = work / f"reference-{key[0]}x{key[1]}-{key[2]}"
        result = launch(config(topo, ref_dir, [], limit, device))
        if not result.ok:
            raise SystemExit(f"reference run {key} failed: {result.message}")
        refs[key] = (ref_dir / "final_params.bin").read_bytes()
    out = work / f"schedule{index:03d}"
    result = launch(config(topo, out, failures, limit, device))
    tally.schedules += 1
    fired = len(list((out / "faults").glob("fired*.json")))
    marks = [p.read_text() for p in (out / "faults").glob("damaged*.json")]
    memory = sum('"mem@' in mark for mark in marks)
    damaged = len(marks) - memory
    tally.failures += fired + damaged + memory
    tally.damaged += damaged
    tally.memory_damaged += memory
    sources = recoveries(out)
    tally.recoveries.update(sources)
    frame = read_events(out)
    tally.refused += int(frame[frame.event == "persistent_rejected"].step.nunique())
    refused_in_memory = int((frame.event == "local_rejected").sum())
    tally.memory_refused += refused_in_memory
    exact = result.ok and (out / "final_params.bin").read_bytes() == refs[key]
    tally.completed += result.ok
    tally.bit_exact += exact
    hang = not result.ok and "time limit" in result.message
    tally.hangs += hang
    left = leftovers(result.job_id, out)
    tally.leftovers += bool(left)
    if not exact or left or refused_in_memory != memory:
        kept = ""
        if keep is not None:  # the evidence outlives the temporary directory
            keep.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.copytree(out, keep / out.name, dirs_exist_ok=True)
            kept = f"; kept in {keep / out.name}"
        tally.problems.append(
            f"schedule {index}: {topo} {failures}: {result.message}; leftovers {left};"
            f" copies in memory damaged {memory}, refused {refused_in_memory}{kept}"
        )
    return (
        f"{index:3d} {topo['parallelism']:4s} {topo['placement']:5s} N={topo['machines']} m={topo['replicas']}"
        f" p={topo['procs']} "
        f"{kind:14s} fired={fired} damaged={damaged + memory} recovered={','.join(sources) or '-'} "
        f"exact={exact} leftovers={len(left)} {result.wall_s:.0f}s"
    )


def table(tally: Tally) -> str:
    by_source = ", ".join(f"{s} {tally.recoveries[s]}" for s in SEVERITY if tally.recoveries[s]) or "none"
    rows = [
        ("schedules", tally.schedules),
        ("failures injected (incl. damage)", tally.failures),
        ("recoveries by source", by_source),
        ("completed", f"{tally.completed}/{tally.schedules}"),
        ("bit-exact with reference", f"{tally.bit_exact}/{tally.schedules}"),
        ("hangs (time limit)", tally.hangs),
        ("runs with leftovers", tally.leftovers),
        ("persistent checkpoints damaged", tally.damaged),
        ("corrupted persistent checkpoints refused", tally.refused),
        ("copies in shared memory damaged", tally.memory_damaged),
        ("damaged copies in memory refused", tally.memory_refused),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--schedules", type=int, default=8, help="number of random schedules")
    parser.add_argument("--seed", type=int, default=0, help="seed of the schedule generator")
    parser.add_argument("--out", type=Path, default=None, help="keep the run directories here")
    parser.add_argument("--time-limit", type=float, default=300.0, help="a run past this counts as a hang")
    parser.add_argument("--max-machines", type=int, default=4, choices=range(2, 9), help="largest job drawn")
    parser.add_argument(
        "--parallelism", type=lambda text: tuple(text.split(",")), default=("fsdp",),
        help="comma-separated parallelisms to draw from (default: fsdp)",
    )  # fmt: skip
    parser.add_argument(
        "--kinds", type=lambda text: tuple(text.split(",")), default=KINDS,
        help=f"comma-separated failure kinds to draw from (default: all of {','.join(KINDS)})",
    )  # fmt: skip
    parser.add_argument(
        "--device", default="cpu", choices=("auto", "cpu", "cuda"),
        help="where the ranks train (cpu: the recovery logic on any host; a GPU per rank otherwise)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if unknown := set(args.kinds) - set(KINDS):
        parser.error(f"--kinds: unknown {', '.join(sorted(unknown))}; allowed: {', '.join(KINDS)}")
    if unknown := set(args.parallelism) - {"fsdp", "hsdp", "ddp"}:
        parser.error(f"--parallelism: unknown {', '.join(sorted(unknown))}; allowed: fsdp, hsdp, ddp")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    stop_on_signals()
    rng = np.random.default_rng(args.seed)
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="soak-realrun-") as tmp:
        work = args.out or Path(tmp)
        work.mkdir(mode=0o700, parents=True, exist_ok=True)
        refs: dict = {}
        try:
            for index in range(args.schedules):
                line = run_schedule(
                    index, rng, work, refs, tally, args.time_limit, args.max_machines, args.device, args.kinds,
                    args.parallelism, None if args.out else Path("soak-problems"),
                )  # fmt: skip
                print(line, flush=True)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the table of the schedules that finished
            print(f"interrupted during schedule {tally.schedules}", flush=True)
            interrupted = True
        else:
            interrupted = False
    print(table(tally))
    for problem in tally.problems:
        print("problem:", problem)
    ok = (
        tally.bit_exact == tally.schedules
        and not tally.leftovers
        and tally.refused == tally.damaged
        and tally.memory_refused == tally.memory_damaged
    )
    return 130 if interrupted else 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
