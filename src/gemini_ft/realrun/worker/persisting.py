"""How the worker keeps its persistent checkpoints, and what it persists after a failure.

`sync`: every rank writes its part with dcp.save and training waits for the whole step to commit (the
stall a periodic persistent checkpoint costs without Gemini). `async`: each rank's persister process
(`gemini_ft.realrun.engine.persister`) writes the part from the committed in-memory copy of that step
while training goes on; the stall is the request alone. Either way a `persist` event records the
stall. With persist-on-failure, a run that recovered from memory persists the recovered step at once,
so its persistent fallback is the newest committed step instead of the last periodic one.
"""

from __future__ import annotations

import os
import time

from gemini_ft.realrun.config import RealRunConfig
from gemini_ft.realrun.engine.backup import save_persistent
from gemini_ft.realrun.engine.checkpointer import Checkpointer
from gemini_ft.realrun.engine.persistent import committed_steps, persistent_dir
from gemini_ft.realrun.engine.persister import Persister, PersisterConfig
from gemini_ft.realrun.engine.recovery import Plan
from gemini_ft.realrun.engine.shard import ShardCodec
from gemini_ft.realrun.measurements import EventLog


class Persistence:
    """One rank's persistent checkpoints in this round of the job (`token` names the round)."""

    def __init__(
        self, cfg: RealRunConfig, rank: int, machine: int, codec: ShardCodec, events: EventLog, token: str,
        t0: float,
    ) -> None:  # fmt: skip
        self.cfg, self.rank, self.codec, self.events, self.token = cfg, rank, codec, events, token
        self.persister = None
        if cfg.persist_mode == "async":
            self.persister = Persister(
                PersisterConfig(
                    shm=os.environ["GEMINI_FT_SHM"], machine=machine, rank=rank, world_size=cfg.world_size,
                    run_dir=str(cfg.out), run_id=events.base["run_id"], t0=t0,
                )
            )  # fmt: skip

    def due(self, step: int) -> bool:
        return step % self.cfg.persist_every == 0

    def persist(self, step: int, checkpointer: Checkpointer, owner: int | None = None) -> None:
        """Persist `step`: synchronously from the live shard, or by a request to the persister for the
        committed copy of shard `owner` (this rank's by default), whose snapshot is already under way."""
        if self.persister is None:
            checkpointer.wait_copied()
            start = time.perf_counter()
            step_dir = persistent_dir(self.cfg.out, step)
            nbytes = save_persistent(self.codec, self.rank, step_dir, step, self.cfg.world_size, self.token)
            self.events.log("persist", step, nbytes=nbytes, duration_s=time.perf_counter() - start,
                            source="persistent", detail="sync")  # fmt: skip
            return
        stall = self.persister.request(step, self.rank if owner is None else owner, self.token)
        self.events.log("persist", step, nbytes=self.codec.plan().nbytes, duration_s=stall, source="persistent",
                        detail="async")  # fmt: skip

    def before_snapshot(self, step: int) -> None:
        """A snapshot of `step` overwrites the slot of the snapshot before the previous one: a persist of
        that one must be out of shared memory first (normally long since)."""
        if self.persister is not None:
            self.persister.wait_copied(before=step - self.cfg.ckpt_every)

    def settle(self) -> None:
        """Wait for the persister's outstanding writes (before a failure strikes, and at the end), so what
        is persisted when does not depend on how fast storage happened to be."""
        if self.persister is not None:
            self.persister.wait_idle()

    def after_recovery(self, plan: Plan, checkpointer: Checkpointer) -> None:
        """With persist-on-failure: persist the step recovered from memory if no persistent checkpoint
        of it or a newer one exists yet."""
        newest = max(committed_steps(self.cfg.out), default=-1)
        if self.cfg.persist_on_failure and plan.source == "memory" and plan.step > newest:
            assert plan.shard is not None
            self.persist(plan.step, checkpointer, owner=plan.shard[self.rank])

    def close(self) -> None:
        if self.persister is not None:
            self.persister.close()
