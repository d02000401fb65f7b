"""The cost model: how long each checkpoint, transfer, serialization and recovery step takes.

The one home of these formulas: the engine charges them, the policies build their plans from them,
calibration predicts held-out measurements with them and the figures tabulate them. Every time is
a fixed cost plus bytes over a bandwidth; sizes come from the scenario (`Scenario.ckpt_bytes_*`).
"""

from __future__ import annotations

from dataclasses import dataclass

from gemini_ft.scenarios.schema import Scenario

RECOVERY_STEPS = ("detection", "replacement", "serialization", "retrieval", "warmup")
SOURCES = ("local", "peer", "persistent")


def _seconds(nbytes: float, gbps: float) -> float:
    return nbytes * 8 / (gbps * 1e9)


def persistent_ckpt_s(scenario: Scenario) -> float:
    """Writing (or reading) the whole checkpoint to remote storage at its aggregate bandwidth."""
    return scenario.storage.latency_s + _seconds(scenario.ckpt_bytes_total, scenario.storage.bandwidth_gbps)


def replication_bandwidth_gbps(scenario: Scenario) -> float:
    """Effective bandwidth of a replication round during training: the NIC's unless set apart."""
    explicit = scenario.checkpoint.replication_gbps
    return scenario.cluster.nic_bandwidth_gbps if explicit is None else explicit


def replication_latency_s(scenario: Scenario) -> float:
    """Fixed cost of one replication round; none with m = 1, where nothing leaves the machine."""
    return scenario.checkpoint.transfer_latency_s if scenario.checkpoint.replicas > 1 else 0.0


def replication_round_s(scenario: Scenario) -> float:
    """Sending m − 1 replicas of one machine's shard to its peers (machines send in parallel).

    One round serves all peers at once, so its fixed cost is paid once, not per peer.
    """
    nbytes = scenario.ckpt_bytes_per_machine * (scenario.checkpoint.replicas - 1)
    return replication_latency_s(scenario) + _seconds(nbytes, replication_bandwidth_gbps(scenario))


def peer_retrieval_s(scenario: Scenario) -> float:
    """Fetching one machine's shard from a peer over the NIC, which a recovery has to itself."""
    ckpt = scenario.checkpoint
    latency = ckpt.transfer_latency_s if ckpt.fetch_latency_s is None else ckpt.fetch_latency_s
    return latency + _seconds(scenario.ckpt_bytes_per_machine, scenario.cluster.nic_bandwidth_gbps)


def local_retrieval_s(scenario: Scenario) -> float:
    """Restoring each GPU's shard from the machine's own CPU memory (the GPUs copy in parallel)."""
    ckpt = scenario.checkpoint
    return ckpt.local_retrieval_latency_s + _seconds(
        scenario.ckpt_bytes_per_gpu, local_retrieval_gbps(scenario)
    )


def local_retrieval_gbps(scenario: Scenario) -> float:
    """A restore's copy rate: its own when measured, else the snapshot's (the same copy, other way)."""
    own = scenario.checkpoint.local_retrieval_gbps
    return scenario.interleave.gpu_to_cpu_gbps if own is None else own


def serialization_s(scenario: Scenario) -> float:
    """Serializing one replica of one machine's shard to CPU memory (the stall of a persistent checkpoint)."""
    return _seconds(scenario.ckpt_bytes_per_machine, scenario.checkpoint.serialization_gbps)


def recovery_serialization_s(scenario: Scenario) -> float:
    """Serializing the m in-memory replicas before a restart from CPU memory."""
    if scenario.recovery.serialization_s is not None:
        return scenario.recovery.serialization_s
    return serialization_s(scenario) * scenario.checkpoint.replicas


@dataclass(frozen=True)
class RecoveryCosts:
    """What each step of a recovery costs, per checkpoint source (the engine's and calibration's sum)."""

    detection_s: float
    warmup_s: float
    recovery_serialization_s: float
    retrieval_local_s: float
    retrieval_peer_s: float
    retrieval_persistent_s: float
    hardware_detection_s: float | None = None
    """Detection of a hardware failure; None = `detection_s` (see `detection_for`)."""

    def detection_for(self, source: str) -> float:
        """Detection before a recovery from `source`.

        The source stands for the failure type: a recovery from local memory follows a software failure
        (the machine survived), one from a peer or from storage a hardware failure (a machine's memory
        was lost), whose detection waits for its rendezvous keep-alives to expire.
        """
        if source == "local" or self.hardware_detection_s is None:
            return self.detection_s
        return self.hardware_detection_s

    def retrieval_s(self, source: str) -> float:
        """Fetching the checkpoint from `source`: local memory, a peer, or persistent storage."""
        return {"local": self.retrieval_local_s, "peer": self.retrieval_peer_s}.get(
            source, self.retrieval_persistent_s
        )

    def serialization_s(self, source: str) -> float:
        """Serializing the in-memory replicas before a restart from CPU memory (none from storage)."""
        return 0.0 if source == "persistent" else self.recovery_serialization_s

    def step_s(self, step: str, source: str, replacement_wait_s: float = 0.0) -> float:
        """One recovery step; `replacement_wait_s` is how long the replacement machine is still away."""
        if step == "detection":
            return self.detection_for(source)
        if step == "replacement":
            return replacement_wait_s
        if step == "serialization":
            return self.serialization_s(source)
        if step == "retrieval":
            return self.retrieval_s(source)
        if step == "warmup":
            return self.warmup_s
        raise ValueError(f"unknown recovery step {step!r}; steps are {', '.join(RECOVERY_STEPS)}")

    def total_s(self, source: str, replacement_wait_s: float = 0.0) -> float:
        """A whole recovery from `source`, uninterrupted."""
        return sum(self.step_s(step, source, replacement_wait_s) for step in RECOVERY_STEPS)


def recovery_costs(scenario: Scenario) -> RecoveryCosts:
    return RecoveryCosts(
        detection_s=scenario.recovery.detection_s,
        hardware_detection_s=scenario.recovery.hardware_detection_s,
        warmup_s=scenario.recovery.warmup_s,
        recovery_serialization_s=recovery_serialization_s(scenario),
        retrieval_local_s=local_retrieval_s(scenario),
        retrieval_peer_s=peer_retrieval_s(scenario),
        retrieval_persistent_s=persistent_ckpt_s(scenario),
    )
