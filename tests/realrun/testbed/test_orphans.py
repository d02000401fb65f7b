"""A launcher killed with SIGKILL leaves no agent or worker behind, whenever it dies; and what a dead
job's processes may still be are found and ended by `realrun --cleanup` (and the next launch)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gemini_ft.cli import main
from gemini_ft.realrun.testbed.orphans import MARK, launcher_identity, orphan_processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _marked(launcher: int) -> list[int]:
    """Our processes carrying the mark of `launcher` (its agents and their workers)."""
    prefix = f"{MARK}={launcher}:".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(item.startswith(prefix) for item in environ.split(b"\0")):
            found.append(int(entry.name))
    return found


def _wait_until(condition, what: str, poll_s: float = 0.05) -> None:
    # Bounded by the test's timeout, not by a clock of its own: a slow machine only takes longer.
    while not condition():
        time.sleep(poll_s)


@pytest.mark.parametrize("when", ["agents-starting", "training"])
def test_a_launcher_killed_with_sigkill_takes_its_agents_and_workers_along(tmp_path, when):
    command = [
        sys.executable, "-m", "gemini_ft", "realrun", "--machines", "2", "--steps", "100000",
        "--persist-every", "1000", "--device", "cpu", "--no-progress", "--no-disk-baseline",
        "--out", str(tmp_path), "--port", str(_free_port()),
    ]  # fmt: skip
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if when == "agents-starting":  # the first agent exists: kill before it can have settled
            _wait_until(lambda: _marked(launcher.pid), "an agent")
        else:
            events = tmp_path / "events" / "rank1.jsonl"
            _wait_until(lambda: events.exists() and '"event": "step"' in events.read_text(), "a step")
            assert len(_marked(launcher.pid)) >= 4  # two agents and their two workers
    finally:
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
    _wait_until(lambda: not _marked(launcher.pid), "no process of the job")


# The two links of the chain on their own, each with a child that would otherwise outlive the test
# (sleep 1000): a killed parent takes it along, or the test hangs until its timeout fails it.
def _orphaned_child(tmp_path: Path, code: str) -> int:
    """Run `code` in a process whose parent we then SIGKILL; returns the pid `code` wrote down."""
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", code, str(pid_file)])
    _wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), "the child")
    child = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    return child


def _gone(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) == "Z"
    except OSError:
        return True


def test_an_agent_dies_with_its_launcher(tmp_path):
    # The parent starts the agent as the launcher does; torchrun then runs `sleep 1000` as its worker.
    code = (
        "import os, subprocess, sys, time\n"
        "agent = subprocess.Popen([sys.executable, '-m', 'gemini_ft.realrun.testbed.agent', str(os.getpid()), '--',"
        " '--standalone', '--nproc-per-node=1', '--no-python', 'sleep', '1000'])\n"
        "cmdline = f'/proc/{agent.pid}/cmdline'\n"
        "while b'torch.distributed.run' not in open(cmdline, 'rb').read(): time.sleep(0.02)\n"
        "open(sys.argv[1], 'w').write(str(agent.pid))\n"
        "time.sleep(1000)\n"
    )
    agent = _orphaned_child(tmp_path, code)  # killed once the agent has become torchrun
    _wait_until(lambda: _gone(agent), "the agent")


def test_a_worker_dies_with_its_agent(tmp_path):
    code = (
        "import subprocess, sys, time\n"
        "worker = subprocess.Popen([sys.executable, '-c', 'import sys, time\\n"
        "from gemini_ft.realrun.worker.train import die_with_agent\\n"
        "die_with_agent(0.05)\\n"
        'open(sys.argv[1], "w").write("ready")\\n'
        "time.sleep(1000)', sys.argv[1] + '.ready'])\n"
        "while not __import__('os').path.exists(sys.argv[1] + '.ready'): time.sleep(0.05)\n"
        "open(sys.argv[1], 'w').write(str(worker.pid))\n"
        "time.sleep(1000)\n"
    )
    worker = _orphaned_child(tmp_path, code)
    _wait_until(lambda: _gone(worker), "the worker")


def test_cleanup_ends_the_processes_of_dead_jobs_and_only_those(tmp_path, capsys):
    dead = subprocess.Popen(["sleep", "1000"])
    dead_identity = launcher_identity(dead.pid)
    dead.kill()
    dead.wait()
    orphan = subprocess.Popen(["sleep", "1000"], env={**os.environ, MARK: dead_identity})
    alive = subprocess.Popen(["sleep", "1000"], env={**os.environ, MARK: launcher_identity()})
    try:
        assert orphan.pid in orphan_processes() and alive.pid not in orphan_processes()
        assert main(["realrun", "--cleanup", "--json", "--out", str(tmp_path)]) == 0
        report = json.loads(capsys.readouterr().out)
        assert orphan.pid in report["ended"] and alive.pid not in report["ended"]
        assert orphan.wait() == -signal.SIGKILL
        assert alive.poll() is None  # a live job's process is never touched
    finally:
        for process in (orphan, alive):
            if process.poll() is None:
                process.kill()
            process.wait()
