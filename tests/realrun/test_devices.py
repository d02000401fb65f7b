"""One GPU per rank: the device mapping and the refusal, with the GPU count injected (no CUDA needed)."""

import pytest

from gemini_ft.common.errors import UserError
from gemini_ft.realrun.config import RealRunConfig
from gemini_ft.realrun.devices import check_devices, device_for
from gemini_ft.realrun.testbed.launcher import validate


def test_emulated_machines_on_one_host_take_distinct_gpus():
    # 2 machines x 4 processes on an 8-GPU host: every rank its own GPU, machine-major.
    found = [device_for("auto", m, r, 4, 8, shared_host=True) for m in range(2) for r in range(4)]
    assert found == [f"cuda:{i}" for i in range(8)]
    # The collision the issue reported: both machines' local rank 0 used to take cuda:0.
    assert device_for("auto", 1, 0, 1, 2, shared_host=True) == "cuda:1"


def test_plain_torchrun_on_a_cluster_keeps_local_rank():
    assert device_for("auto", 5, 3, 8, 8, shared_host=False) == "cuda:3"
    assert device_for("cuda", 1, 0, 1, 1, shared_host=False) == "cuda:0"


def test_cpu_when_asked_or_when_no_gpu():
    assert device_for("cpu", 1, 3, 4, 8, shared_host=True) == "cpu"
    assert device_for("auto", 1, 3, 4, 0, shared_host=True) == "cpu"


def test_more_ranks_than_gpus_fails_in_the_worker_too_unless_sharing():
    with pytest.raises(RuntimeError, match="needs GPU 2"):
        device_for("auto", 1, 0, 2, 2, shared_host=True)
    assert device_for("auto", 1, 0, 1, 1, shared_host=True, sharing=True) == "cuda:0"


def test_refusal_is_one_line_naming_the_flags_and_the_gpus_found():
    with pytest.raises(UserError) as caught:
        check_devices("auto", 2, 4, 4)
    message = str(caught.value)
    assert "\n" not in message
    assert "--machines 2" in message and "--procs-per-machine 4" in message and "4 GPU(s) found" in message
    with pytest.raises(UserError, match="no CUDA GPU"):
        check_devices("cuda", 1, 1, 0)


def test_accepted_layouts():
    check_devices("auto", 2, 4, 8)  # exactly one GPU per rank
    check_devices("cpu", 8, 16, 1)  # cpu never looks at GPUs
    check_devices("auto", 8, 16, 0)  # auto without GPUs is cpu
    check_devices("auto", 2, 1, 1, sharing=True)  # the one-GPU check over gloo


def test_launcher_validate_refuses_before_anything_starts(monkeypatch):
    monkeypatch.setattr("gemini_ft.realrun.testbed.launcher.visible_gpus", lambda: 1)
    with pytest.raises(UserError, match="--machines 2 x --procs-per-machine 1"):
        validate(RealRunConfig(machines=2, port=29999))
    validate(RealRunConfig(machines=2, device="cpu", port=29999))
