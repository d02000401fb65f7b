"""The local testbed: N emulated machines on this host, one torchrun agent each, sharing a c10d store.

The launcher hosts the rendezvous TCPStore itself (so killing any machine never takes the store
down), gives every machine a private shared-memory directory under /dev/shm, replaces a machine that
a hardware failure struck (kill its agent and workers, wipe its memory, start a fresh agent), and
always removes its processes and shared memory — on success, error, Ctrl-C or SIGTERM (exit 143).
Everything listens on loopback: the store on a socket the launcher binds to 127.0.0.1 itself (torch's
TCPStore would bind every interface), gloo on `lo`, and the agents host no store (`is_host=false`).
With `netns`, every machine runs in its own network namespace behind a shaped link (`gemini_ft.realrun.testbed.netns`);
the store listens on the bridge address only, and the namespaces, veths and bridge are removed the
same way. The c10d store is unauthenticated: a multi-host run must keep it on a trusted network.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gemini_ft.common.errors import UserError
from gemini_ft.common.results_io import check_output_path
from gemini_ft.placement.layout import build_placement
from gemini_ft.realrun import markers
from gemini_ft.realrun.config import RealRunConfig, parse_model_size
from gemini_ft.realrun.devices import check_devices, gpu_sharing, visible_gpus
from gemini_ft.realrun.faults import parse_failures
from gemini_ft.realrun.testbed import netns
from gemini_ft.realrun.testbed.orphans import end_orphans, launcher_identity
from gemini_ft.realrun.testbed.rundir import check_out, prepare, write_private
from gemini_ft.realrun.testbed.shm_jobs import cleanup_stale_shm, create_job_dir, new_job_id
from gemini_ft.realrun.testbed.tracking import JobTracker

LOOPBACK = "127.0.0.1"


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached the launcher: clean up like Ctrl-C, exit 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@dataclass(frozen=True)
class RunResult:
    """How a launch ended and where its files are."""

    ok: bool
    job_id: str
    run_dir: Path
    wall_s: float
    machine_replacements: int
    message: str


def validate(cfg: RealRunConfig) -> None:
    """Every user mistake becomes a UserError before anything starts."""
    build_placement(cfg.placement, cfg.machines, cfg.replicas)
    parse_model_size(cfg.model_size, cfg.model)
    parse_failures(list(cfg.failures), cfg.machines, cfg.procs_per_machine, cfg.steps)
    check_out(cfg.out, cfg.force)
    if cfg.track != "none" and cfg.track_dir is not None:  # refused now, not warned about mid-run
        check_output_path("track_dir", cfg.track_dir, kind="dir")
    try:
        listen_socket(LOOPBACK, cfg.port).close()
    except OSError:
        raise UserError("port", cfg.port, f"is busy on {LOOPBACK}; choose a free port") from None
    if cfg.netns:
        netns.check_available(cfg.link_gbps, cfg.link_latency_ms)
    if cfg.device != "cpu":  # every emulated machine shares this host's GPUs: one per rank
        check_devices(cfg.device, cfg.machines, cfg.procs_per_machine, visible_gpus(), gpu_sharing())


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on `host:port` only, bound the way the store needs it.

    SO_REUSEADDR, so that a port whose last run ended moments ago (connections in TIME_WAIT) can be
    bound again; the probe in `validate` binds exactly so, so it answers for the real bind.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock


def launch(cfg: RealRunConfig) -> RunResult:
    """Run the job to completion (or failure) and clean up everything it started."""
    validate(cfg)
    from torch.distributed import TCPStore  # heavy import only once the input is valid

    # Every agent, the first ones and each replacement, starts from the environment the job started
    # with: the launcher's own may change while the job runs (W&B's service sets WANDB_SERVICE when the
    # tracker starts it), and a replacement machine must run what the machine it replaces ran.
    environment = dict(os.environ)
    previous_umask = os.umask(0o077)  # every directory and file of the run is the job's alone
    job_id = new_job_id()
    run_dir = check_out(cfg.out, cfg.force)
    prepare(run_dir)
    cfg = cfg.model_copy(update={"out": run_dir})
    write_private(run_dir / "config.json", cfg.model_dump_json(indent=2))
    end_orphans()  # agents and workers of jobs whose launcher was killed (kill -9), and their memory
    cleanup_stale_shm()
    shm = create_job_dir(job_id)
    t0 = time.time()
    agents: dict[int, subprocess.Popen] = {}
    replacements = 0
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    for sig in previous:
        signal.signal(sig, _raise_interrupt)
    testbed = contextlib.ExitStack()  # the network namespaces, when asked for
    store = None
    tracking = None

    def ended(ok: bool, message: str) -> RunResult:
        return RunResult(ok, job_id, run_dir, time.time() - t0, replacements, message)

    try:
        # Tracking lives here, in the one process no failure kills: nothing is lost, one run per job.
        tracking = JobTracker(cfg, job_id, t0)
        bed = None
        if cfg.netns:
            bed = testbed.enter_context(
                netns.testbed(job_id, cfg.machines, cfg.link_gbps, cfg.link_latency_ms)
            )
        host = bed.bridge_address if bed else LOOPBACK
        store = TCPStore(
            host,
            cfg.port,
            is_master=True,
            wait_for_workers=False,
            master_listen_fd=listen_socket(host, cfg.port).detach(),  # the store owns and closes it
            use_libuv=True,
        )
        for machine in range(cfg.machines):
            agents[machine] = _start_agent(cfg, machine, job_id, shm, t0, environment, bed)
        done: set[int] = set()
        while len(done) < cfg.machines:
            if time.time() - t0 > cfg.time_limit_s:
                return ended(False, f"time limit {cfg.time_limit_s:g} s reached")
            for machine, request in markers.machine_kill_requests(run_dir, cfg.machines):
                _kill_tree(agents[machine].pid)
                agents[machine].wait()
                shutil.rmtree(shm / f"machine{machine}", ignore_errors=True)  # the machine's memory is gone
                request.unlink()
                # The replacement joins in the same namespace: the link survives, the memory does not.
                agents[machine] = _start_agent(cfg, machine, job_id, shm, t0, environment, bed)
                replacements += 1
            for machine, agent in agents.items():
                code = agent.poll()
                if code == 0:
                    done.add(machine)
                elif code is not None and not markers.machine_kill_requested(run_dir, machine):
                    log = run_dir / "logs" / f"machine{machine}.log"
                    return ended(False, f"machine {machine} agent exited with {code}; see {log}")
            time.sleep(0.05)
        return ended(True, "completed")
    finally:
        for agent in agents.values():
            if agent.poll() is None:
                _kill_tree(agent.pid)
            agent.wait()
        if tracking is not None:
            tracking.close()  # every worker has ended: what they wrote last is tracked too
        shutil.rmtree(shm, ignore_errors=True)
        del store
        try:
            testbed.close()  # after the agents: nothing may still run inside a namespace
        finally:
            os.umask(previous_umask)
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _start_agent(
    cfg: RealRunConfig,
    machine: int,
    job_id: str,
    shm: Path,
    t0: float,
    environment: dict[str, str],
    bed: netns.Testbed | None = None,
) -> subprocess.Popen:
    env = dict(environment)
    store_host = bed.bridge_address if bed else LOOPBACK
    in_namespace: list[str] = []
    # gloo listens on the address of the interface it is given (else on what the hostname resolves to).
    env.update(GLOO_SOCKET_IFNAME="lo", NCCL_SOCKET_IFNAME="lo", TP_SOCKET_IFNAME="lo")
    if bed is not None:
        # Inside a namespace the hostname resolves to its private loopback: name the machine by its
        # address, and make gloo (and NCCL / tensorpipe on GPU hosts) bind to the shaped interface.
        in_namespace = bed.exec_prefix(machine)
        env.update(
            GLOO_SOCKET_IFNAME=netns.IFNAME, NCCL_SOCKET_IFNAME=netns.IFNAME, TP_SOCKET_IFNAME=netns.IFNAME
        )
    # torch 2.13's c10d handler caches the bootstrap store of its first round, so a replacement agent
    # joining survivors would wait forever for MASTER_ADDR; workers use the launcher's store instead,
    # and rank assignment skips the per-round role exchange (every machine runs the same procs).
    package_root = str(Path(__file__).resolve().parents[3])  # the folder holding gemini_ft/, nothing else
    env.update(
        TORCH_ELASTIC_WORKER_IDENTICAL="1", TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1", GEMINI_FT_STORE=f"{store_host}:{cfg.port}", GEMINI_FT_MACHINE=str(machine), GEMINI_FT_SHM=str(shm), GEMINI_FT_T0=repo_float(t0), GEMINI_FT_JOB=job_id,
        GEMINI_FT_LAUNCHER=launcher_identity(),
        PYTHONPATH=os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")])),
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // cfg.world_size))),
    )  # fmt: skip
    command = [
        *in_namespace, sys.executable, "-m", "gemini_ft.realrun.testbed.agent", str(os.getpid()), "--",
        f"--local-addr={bed.machines[machine].address if bed else LOOPBACK}",
        f"--nnodes={cfg.machines}", f"--nproc-per-node={cfg.procs_per_machine}",
        "--rdzv-backend=c10d", f"--rdzv-endpoint={store_host}:{cfg.port}", f"--rdzv-id={job_id}",
        # A killed machine stays a participant until its keep-alive expires; the next round waits for that.
        "--rdzv-conf=is_host=false,join_timeout=120,"
        f"keep_alive_interval={cfg.keep_alive_s},keep_alive_max_attempt=2",
        f"--max-restarts={cfg.max_restarts}",
        "--monitor-interval=0.1", "-m", "gemini_ft.realrun.worker.train", "--config", str(cfg.out / "config.json"),
    ]  # fmt: skip
    log = open(cfg.out / "logs" / f"machine{machine}.log", "ab")  # noqa: SIM115 - owned by the child
    try:
        return subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        log.close()


def repo_float(value: float) -> str:
    return repr(float(value))


def _children(pid: int) -> list[int]:
    """Children of `pid`, from every process's parent in /proc (torchrun puts workers in new sessions)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces; fields after its closing parenthesis are fixed.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _kill_tree(pid: int, wait_s: float = 10.0) -> None:
    """SIGKILL `pid` and all its descendants and wait until they are gone.

    The agent is stopped first so it cannot start new workers between the scan and the kill, and
    the whole tree is found before anyone dies, so no worker is re-parented out of sight.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGSTOP)
    tree, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        tree.append(current)
        frontier += _children(current)
    for victim in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    deadline = time.time() + wait_s
    # Zombies of our own agent are reaped by Popen.wait(); others' are reaped by init.
    while time.time() < deadline and any(_alive(p) for p in tree if p != pid):
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _raise_interrupt(signum: int, frame: object) -> None:
    raise Terminated(signum)


def config_json(run_dir: Path) -> str:
    return json.dumps(json.loads((run_dir / "config.json").read_text()), sort_keys=True)
