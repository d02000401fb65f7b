"""Which device each rank trains on: one GPU per rank, or a clear refusal before anything starts.

The local testbed emulates several machines on one host, so their ranks share that host's GPUs: rank
`local` of emulated machine `m` takes GPU `m × procs_per_machine + local`. A plain torchrun launch on
a real cluster has one agent per host, and there LOCAL_RANK alone names the GPU. Both functions
take the GPU count as an argument, so the mapping is tested without CUDA.

`GEMINI_FT_GPU_SHARING=gloo` (testbed only, e.g. a one-GPU check of a two-machine run) lets ranks
share GPUs round-robin and makes them talk gloo, since NCCL refuses two ranks on one device.
"""

from __future__ import annotations

import os

from gemini_ft.common.errors import UserError

SHARING_ENV = "GEMINI_FT_GPU_SHARING"
TESTBED_ENV = (
    "GEMINI_FT_STORE"  # set by gemini_ft.realrun.testbed.launcher for every worker of the local testbed
)


def gpu_sharing() -> bool:
    """Whether ranks may share a GPU (over gloo), as asked for by GEMINI_FT_GPU_SHARING=gloo."""
    return os.environ.get(SHARING_ENV, "") == "gloo"


def uses_cuda(device: str, gpus: int) -> bool:
    """`device` is the config's auto|cpu|cuda; auto means CUDA whenever a GPU is visible."""
    return device == "cuda" or (device == "auto" and gpus > 0)


def check_devices(
    device: str, machines: int, procs_per_machine: int, gpus: int, sharing: bool = False
) -> None:
    """Refuse, in one line naming the flags, a testbed that would put two ranks on one GPU."""
    if device == "cpu":
        return
    if device == "cuda" and gpus == 0:
        raise UserError("device", device, "but no CUDA GPU is visible; use --device cpu or auto")
    ranks = machines * procs_per_machine
    if uses_cuda(device, gpus) and ranks > gpus and not sharing:
        raise UserError(
            "device",
            device,
            f"needs one GPU per rank: --machines {machines} x --procs-per-machine {procs_per_machine} = "
            f"{ranks} ranks on this host but {gpus} GPU(s) found; use fewer ranks or --device cpu",
        )


def device_for(
    device: str,
    machine: int,
    local_rank: int,
    procs_per_machine: int,
    gpus: int,
    shared_host: bool,
    sharing: bool = False,
) -> str:
    """The torch device string of one rank: "cpu" or "cuda:<index>".

    `shared_host`: every emulated machine runs on this host (the local testbed), so the index counts
    the ranks of all machines; otherwise (torchrun on a cluster) it is LOCAL_RANK.
    """
    if not uses_cuda(device, gpus):
        return "cpu"
    index = machine * procs_per_machine + local_rank if shared_host else local_rank
    if index >= gpus:
        if not sharing:
            where = "the emulated machines on this host" if shared_host else "this host's LOCAL_RANKs"
            raise RuntimeError(
                f"rank {local_rank} of machine {machine} needs GPU {index}, but {where} see only {gpus} "
                "GPU(s); start fewer processes per host or use --device cpu"
            )
        index %= gpus
    return f"cuda:{index}"


def visible_gpus() -> int:
    """How many CUDA devices torch sees (0 without a CUDA build); does not create a CUDA context."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
