"""A rank's persister: the process beside a training process that writes its persistent checkpoints from
shared memory, so training never waits for storage beyond the snapshot it already takes.

`Persister` (in the training process) starts `python -m gemini_ft.realrun.engine.persister` with the
rank's settings as JSON and sends one request per line on its stdin, `{"step": s, "owner": o,
"token": t}`: write this rank's part of step s from the committed in-memory copy of shard o (the rank's
own, or after an HSDP recovery its twin's). The process waits for that copy to be committed, copies it
out of shared memory and verifies the copy against its manifest (a copy that raced the next snapshot
into the slot fails and is reported, never written), writes the part in DCP format and commits the
step once every rank's part is there (`gemini_ft.realrun.engine.persistent`). It answers each request
twice on stdout: `{"copied": s}` once the bytes are out of shared memory (from then on the slot may be
reused: the training process waits for this before a snapshot would overwrite it, `wait_copied`), and
`{"step": s, "ok": ...}` once the part is written; it logs a `persist_write` event. When the training process dies, its stdin
ends: the persister finishes the part in flight (its bytes are already out of shared memory) and exits.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

POLL_S = 0.005
WRITE_QUEUE = 2


@dataclass(frozen=True)
class PersisterConfig:
    """What a rank's persister needs: where the shards and the run live, and whose part it writes."""

    shm: str
    machine: int
    rank: int
    world_size: int
    run_dir: str
    run_id: str
    t0: float
    commit_timeout_s: float = 600.0


class Persister:
    """The training process's handle on its persister process; a thread reads its answers."""

    def __init__(self, config: PersisterConfig, environment: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gemini_ft.realrun.engine.persister", json.dumps(asdict(config))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment,
        )  # fmt: skip
        self._changed = threading.Condition()
        self._requested: list[int] = []
        self._copied: set[int] = set()
        self._answered = 0
        self._ended = False
        self.failed: list[str] = []
        threading.Thread(target=self._read, name="persister-answers", daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            answer = json.loads(line)
            with self._changed:
                if "copied" in answer:
                    self._copied.add(int(answer["copied"]))
                else:
                    self._answered += 1
                    if not answer.get("ok"):
                        self.failed.append(f"step {answer.get('step')}: {answer.get('why')}")
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def request(self, step: int, owner: int, token: str) -> float:
        """Ask for this rank's part of `step` from shard `owner`'s committed copy; returns the seconds the
        caller spent (the training stall of an asynchronous persistent checkpoint)."""
        start = time.perf_counter()
        assert self.process.stdin is not None
        with self._changed:
            self._requested.append(step)
        self.process.stdin.write(json.dumps({"step": step, "owner": owner, "token": token}) + "\n")
        self.process.stdin.flush()
        return time.perf_counter() - start

    def _wait(self, done: Callable[[], bool]) -> None:
        with self._changed:
            while not done():
                if self._ended:
                    raise RuntimeError(
                        f"the persister exited with {self.process.wait()} with requests outstanding"
                    )
                self._changed.wait()

    def wait_copied(self, before: int) -> None:
        """Block until every requested step older than `before` is out of shared memory (or failed):
        the slot that holds it may then be overwritten."""
        self._wait(lambda: all(s in self._copied for s in self._requested if s < before))

    def busy(self) -> bool:
        """Whether some request is not answered yet (its part still being copied or written)."""
        with self._changed:
            return self._answered < len(self._requested)

    def wait_idle(self) -> None:
        """Block until every request so far has been answered (written and committed, or failed)."""
        self._wait(lambda: self._answered == len(self._requested))

    def close(self) -> None:
        """Wait for the outstanding requests, then let the process exit."""
        self.wait_idle()
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait()


def _committed(store, owner: int, step: int, deadline: float, alive: Callable[[], bool]) -> str | None:
    """Wait until `owner`'s copy of `step` is committed; why not at the deadline, when the trainer died,
    or once a newer copy took its place (the trainer waits for copies before it reuses a slot)."""
    while time.time() < deadline and alive():
        steps = [manifest.step for _, manifest in store.committed(owner)]
        if step in steps:
            return None
        if len(steps) == 2 and min(steps) > step:
            return f"both slots of shard {owner} hold newer steps ({sorted(steps)}) than {step}"
        time.sleep(POLL_S)
    return f"no committed copy of shard {owner} at step {step} arrived"


def copy_one(config: PersisterConfig, store, request: dict) -> tuple[object, bytearray] | str:
    """The verified private copy a request asks for, (manifest, bytes), or why there is none."""
    step, owner = request["step"], request["owner"]
    trainer = os.getppid()
    deadline = time.time() + config.commit_timeout_s
    why = _committed(store, owner, step, deadline, lambda: os.getppid() == trainer)
    if why is not None:
        return why
    found = store.copy_out(owner, step)
    if found is None:
        return f"the copy of shard {owner} at step {step} was overwritten or damaged while it was read"
    return found


def write_one(config: PersisterConfig, request: dict, manifest, data: bytearray, log) -> None:
    """Write this rank's part of the request's step from a verified copy; commit the step if complete."""
    # torch (for DCP) only here: copying out of shared memory, which the trainer may wait for, needs none.
    import torch

    from gemini_ft.realrun.engine.backup import state_from_bytes, write_part
    from gemini_ft.realrun.engine.persistent import commit_if_complete, persistent_dir

    torch.set_num_threads(1)
    start = time.perf_counter()
    step, token = request["step"], request["token"]
    step_dir = persistent_dir(Path(config.run_dir), step)
    step_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    state = state_from_bytes(manifest.entries, memoryview(data))
    nbytes = write_part(step_dir, config.rank, state, token, manifest.layout)
    committed = commit_if_complete(step_dir, step, config.world_size, token)
    log("persist_write", step, nbytes=nbytes, duration_s=time.perf_counter() - start, source="persistent",
        detail="committed the step" if committed else "part written")  # fmt: skip


def main(argv: list[str]) -> int:
    """Two stages: this thread copies each request's shard out of shared memory as soon as it is
    committed (and says so), a writer thread writes the copies to storage in order; at most
    `WRITE_QUEUE` copies wait for the writer, so storage slower than the checkpoints holds the trainer
    back instead of filling memory."""
    from gemini_ft.realrun.engine.shm_store import ShmStore
    from gemini_ft.realrun.measurements import EventLog

    config = PersisterConfig(**json.loads(argv[0]))
    os.umask(0o077)
    # The write is background work: it yields the CPU to training (lowest priority) and never spreads
    # over a thread pool of its own (torch would start one per core, spinning beside the trainer's).
    os.nice(19)
    os.environ["OMP_NUM_THREADS"] = "1"
    store = ShmStore(config.shm, config.machine)
    events = EventLog(Path(config.run_dir), config.run_id, config.rank, config.machine, config.t0)
    printing = threading.Lock()

    def answer(message: dict) -> None:
        with printing, contextlib.suppress(BrokenPipeError):  # the trainer may be gone; parts stay
            print(json.dumps(message), flush=True)

    def fail(request: dict, why: str) -> None:
        events.log("persist_write", request.get("step", -1), source="persistent", ok=False, detail=why)
        answer({"step": request.get("step"), "ok": False, "why": why})

    writes: queue.Queue = queue.Queue(maxsize=WRITE_QUEUE)

    def write() -> None:
        while (item := writes.get()) is not None:
            request, manifest, data = item
            try:
                write_one(config, request, manifest, data, events.log)
            except Exception as exc:  # a broken write is reported to the trainer, never a silent hang
                fail(request, f"{type(exc).__name__}: {exc}")
            else:
                answer({"step": request["step"], "ok": True, "why": ""})

    writer = threading.Thread(target=write, name="writer")
    writer.start()
    # Import torch meanwhile (seconds): the first copy out of shared memory must not wait for it.
    threading.Thread(
        target=importlib.import_module, args=("gemini_ft.realrun.engine.backup",), daemon=True
    ).start()
    for line in sys.stdin:  # ends when the trainer closes it or dies
        request = json.loads(line)
        try:
            found = copy_one(config, store, request)
        except Exception as exc:
            found = f"{type(exc).__name__}: {exc}"
        answer({"copied": request.get("step")})
        if isinstance(found, str):
            fail(request, found)
        else:
            writes.put((request, *found))
    writes.put(None)
    writer.join()  # the parts already copied are written, whatever became of the trainer
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
