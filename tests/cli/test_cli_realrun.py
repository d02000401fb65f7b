"""`gemini-ft realrun` rejects bad input with one line naming the flag, exit status 2."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from gemini_ft.cli import main


@pytest.mark.parametrize(
    "argv, start",
    [
        (["--placement", "star"], "--placement = 'star': allowed: group, ring, mixed"),
        (["--machines", "2", "--replicas", "3"], "--replicas = 3: must be at most --machines = 2"),
        (
            ["--machines", "3", "--replicas", "2", "--placement", "group"],
            "--placement = 'group': needs --replicas",
        ),
        (["--fail", "sw@step=x:rank=0"], "--fail = 'sw@step=x:rank=0': "),
        (["--fail", "kill-everything"], "--fail = 'kill-everything': expected"),
        (["--model-size", "7q"], "--model-size = '7q': "),
        (["--link-gbps", "10"], "--link-gbps = 10.0: shapes the links of --netns; add --netns"),
        (["--link-latency-ms", "0.5"], "--link-latency-ms = 0.5: shapes the links of --netns"),
        (
            ["--netns", "--link-gbps", "0"],
            "--link-gbps = 0.0: input should be greater than or equal to 0.001",
        ),
        (["--keep-alive", "0"], "--keep-alive = 0: input should be greater than or equal to 1"),
        (["--steps", "0"], "--steps = 0: input should be greater than or equal to 1"),
        (  # a field named in the explanation gets its flag, once
            ["--steps", "5", "--fail", "hw@step=99:machine=0"],
            "--fail = 'hw@step=99:machine=0': step must be between 1 and --steps = 5\n",
        ),
    ],
)
def test_bad_input_is_one_line(argv, start, capsys, tmp_path):
    assert main(["realrun", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gemini-ft: error: {start}")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_busy_port(capsys, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert main(["realrun", "--out", str(tmp_path), "--port", str(port)]) == 2
    assert capsys.readouterr().err.startswith(f"gemini-ft: error: --port = {port}: is busy")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_netns_without_the_ip_command(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a real PATH on which `ip` and `tc` do not exist
    assert main(["realrun", "--netns", "--out", str(tmp_path), "--port", str(_free_port())]) == 2
    err = capsys.readouterr().err
    expected = "needs the `ip` command" if os.geteuid() == 0 else "needs root"
    assert err.startswith("gemini-ft: error: --netns = True: ") and expected in err and err.count("\n") == 1


def test_netns_without_the_right_to_create_namespaces(tmp_path):
    # As root, drop the capabilities that `ip netns add` needs; as anyone else, they are missing anyway.
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop capabilities")
    drop = ["setpriv", "--bounding-set", "-net_admin,-sys_admin"] if os.geteuid() == 0 else []
    command = [*drop, sys.executable, "-m", "gemini_ft", "realrun", "--netns", "--out", str(tmp_path)]
    done = subprocess.run([*command, "--port", str(_free_port())], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("gemini-ft: error: --netns = True: ")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    # No probe namespace left behind (a host that never made one has no /run/netns at all).
    left = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    assert not any(name.startswith("gft-probe-") for name in left)


@pytest.mark.parametrize(
    "argv, start",
    [
        (["--fail", "random:count=abc"], "--fail = 'random:count=abc': 'abc' is not an integer"),
        (
            ["--fail", "random:count=1:seed=-1"],
            "--fail = 'random:count=1:seed=-1': seed must be a non-negative",
        ),
        (["--fail", "random:seed=x"], "--fail = 'random:seed=x': 'x' is not an integer"),
        (["--fail", "disk@step=2:how=melt"], "--fail = 'disk@step=2:how=melt': needs step= and how="),
        (
            ["--chunk-mib", "1e-9"],
            "--chunk-mib = 1e-09: input should be greater than or equal to 0.0009765625",
        ),
        (["--chunk-mib", "nan"], "--chunk-mib = nan: must be a finite number"),
        (["--time-limit", "-1"], "--time-limit = -1.0: input should be greater than 0"),
        (["--time-limit", "nan"], "--time-limit = nan: must be a finite number"),
        (["--time-limit", "inf"], "--time-limit = inf: must be a finite number"),
        (["--netns", "--link-gbps", "inf"], "--link-gbps = inf: must be a finite number"),
        (["--out", "/proc/self/gemini"], "--out = '/proc/self/gemini': is on a virtual file system"),
        (["--out", "/tmp/" + "n" * 256], "--out = '/tmp/nnn"),
    ],
)
def test_bad_input_is_one_line_before_anything_starts(argv, start, capsys, tmp_path):
    assert main(["realrun", "--out", str(tmp_path), "--port", str(_free_port()), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gemini-ft: error: {start}"), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "config.json").exists()


def test_out_that_is_a_file_or_not_ours(capsys, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o700)
    (planted / "persistent").mkdir()
    previous = tmp_path / "previous"
    previous.mkdir(mode=0o700)
    (previous / ".gemini-ft-realrun").write_text("{}")
    (previous / "final_params.bin").write_bytes(b"old")
    for out, reason in (
        (a_file, "exists and is not a directory"),
        (planted, "is not empty and holds no previous gemini-ft realrun; choose a new or empty directory"),
        (previous, "holds a previous gemini-ft realrun; add --force to replace it"),
    ):
        assert main(["realrun", "--out", str(out), "--port", str(_free_port())]) == 2
        err = capsys.readouterr().err
        assert err == f"gemini-ft: error: --out = {str(out)!r}: {reason}\n"
    assert (previous / "final_params.bin").read_bytes() == b"old"  # refused before anything was touched


def test_cleanup_removes_dead_jobs_memory_and_exits(capsys, tmp_path):
    from gemini_ft.realrun.testbed.shm_jobs import SHM_ROOT, create_job_dir

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = create_job_dir(f"{child.pid}-{os.urandom(16).hex()}", SHM_ROOT)
    (dead / "launcher.json").write_text(json.dumps({"pid": child.pid, "start": 1}))
    assert main(["realrun", "--cleanup", "--json", "--out", str(tmp_path)]) == 0
    assert str(dead) in json.loads(capsys.readouterr().out)["removed"] and not dead.exists()
