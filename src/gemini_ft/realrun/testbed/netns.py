"""Realistic links for the local testbed: one Linux network namespace per machine, shaped with tc.

For a job, `testbed()` creates a bridge in the root namespace (the "switch", which also carries the
launcher's rendezvous store) and, per machine, a namespace `gft-<id>-m<i>` joined to the bridge by a
veth pair whose namespace end is called `eth0`. Both ends of every veth are shaped: `tbf` for the rate
and a `netem` child for the delay, so a machine's link is full duplex at `gbps` and a packet between
two machines is delayed by `latency_ms` (half on the sender's uplink, half on the receiver's downlink).

Root only. Every name carries the job's short id, so the module only ever touches what it created,
and the context manager removes all of it on success, error, Ctrl-C or SIGTERM. Leftovers of a
launcher that died by SIGKILL are listed and removed with `python -m gemini_ft.realrun.testbed.netns list|remove <id>`.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from gemini_ft.common.errors import UserError

IFNAME = "eth0"  # the machine's interface inside its namespace (GLOO_SOCKET_IFNAME points at it)
_NS_RE = re.compile(r"^gft-([0-9a-f]{6})-m(\d+)$")
_LINK_RE = re.compile(r"^gft([0-9a-f]{6})-(br|m\d+|n\d+)$")  # interface names stay under 16 chars
_SUBNET_POOL = ipaddress.ip_network("10.200.0.0/13")  # /24s for bridges, skipping any in use


class NetnsError(RuntimeError):
    """An `ip`/`tc` command failed; the message names the command, `why` is its last error line."""

    def __init__(self, message: str, why: str = "") -> None:
        super().__init__(message)
        self.why = why or message


@dataclass(frozen=True)
class Machine:
    """One emulated machine's namespace, its address on the bridge and the veth end the bridge holds."""

    index: int
    namespace: str
    address: str  # of IFNAME inside the namespace
    host_link: str  # the veth end on the bridge


@dataclass(frozen=True)
class Testbed:
    """A job's bridge (with the address the launcher's store listens on) and its machines."""

    short_id: str
    bridge: str
    bridge_address: str
    machines: tuple[Machine, ...]

    def exec_prefix(self, machine: int) -> list[str]:
        """Run a command inside machine `machine`'s namespace."""
        return ["ip", "netns", "exec", self.machines[machine].namespace]


def short_id(job_id: str) -> str:
    """Six hex digits that name a job's namespaces and interfaces (the random part of the job id)."""
    tail = job_id.rsplit("-", 1)[-1]
    return tail[:6] if re.fullmatch(r"[0-9a-f]{6,}", tail) else hashlib.sha1(job_id.encode()).hexdigest()[:6]


def run(command: list[str]) -> str:
    """Run `ip`/`tc` without a shell; a failure becomes a NetnsError naming the command and why."""
    try:
        done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise NetnsError(f"`{command[0]}` not found on PATH (needed for: {' '.join(command)})") from None
    except subprocess.CalledProcessError as exc:
        lines = (exc.stderr or exc.stdout or "").strip().splitlines()
        why = lines[-1].strip() if lines else "no output"
        raise NetnsError(f"`{' '.join(command)}` failed with exit {exc.returncode}: {why}", why) from None
    except subprocess.TimeoutExpired:
        raise NetnsError(f"`{' '.join(command)}` did not finish in 30 s") from None
    return done.stdout


def check_available(gbps: float | None, latency_ms: float) -> None:
    """Raise a UserError naming the flag when this host cannot build the testbed as asked."""
    if os.geteuid() != 0:
        raise UserError("netns", True, "needs root (network namespaces, veth, tc); run as root")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise UserError("netns", True, f"needs the `{tool}` command (iproute2) on PATH")
    probe = f"gft-probe-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        try:
            run(["ip", "netns", "add", probe])
        except NetnsError as exc:
            raise UserError("netns", True, f"`ip netns add` does not work here: {exc}") from None
        # The probe namespace's lo is ours, so trying the qdiscs there touches nothing else.
        if gbps is not None:
            try:
                run(["tc", "-n", probe, "qdisc", "add", "dev", "lo", "root", "handle", "1:", *_tbf(gbps)])
            except NetnsError as exc:
                raise UserError("link_gbps", gbps, f"needs the tc tbf qdisc (sch_tbf): {exc.why}") from None
        if latency_ms > 0:
            try:
                run(["tc", "-n", probe, "qdisc", "replace", "dev", "lo", "root", *_netem(latency_ms / 2)])
            except NetnsError as exc:
                raise UserError(
                    "--link-latency-ms", latency_ms, f"needs the tc netem qdisc (sch_netem); here: {exc.why}"
                ) from None
    finally:
        with contextlib.suppress(NetnsError):
            run(["ip", "netns", "del", probe])


def _tbf(gbps: float) -> list[str]:
    rate_bytes = gbps * 1e9 / 8
    # The bucket must hold a few ms of traffic (timer slack of a busy host) and a whole GSO packet.
    burst = max(64 * 1024, int(rate_bytes * 0.004))
    return ["tbf", "rate", f"{int(gbps * 1e9)}bit", "burst", str(burst), "latency", "50ms"]


def _netem(delay_ms: float) -> list[str]:
    # netem's default queue of 1,000 packets would drop at high rates, long before TCP backs off.
    return ["netem", "delay", f"{delay_ms * 1000:.0f}us", "limit", "100000"]


def shaping_commands(gbps: float | None, latency_ms: float) -> list[list[str]]:
    """`tc qdisc add dev DEV` tails for one veth end: tbf for the rate, a netem child for half the delay."""
    commands = []
    if gbps is not None:
        commands.append(["root", "handle", "1:", *_tbf(gbps)])
    if latency_ms > 0:
        where = ["parent", "1:1", "handle", "10:"] if gbps is not None else ["root", "handle", "1:"]
        commands.append([*where, *_netem(latency_ms / 2)])
    return commands


def _used_networks() -> list[ipaddress.IPv4Network]:
    used = []
    for route in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]) or "[]"):
        with contextlib.suppress(ValueError):
            if route.get("dst", "default") != "default":
                used.append(ipaddress.ip_network(route["dst"], strict=False))
    for link in json.loads(run(["ip", "-j", "-4", "addr", "show"]) or "[]"):
        for info in link.get("addr_info", []):
            used.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False))
    return used


def _claim_subnet(bridge: str, sid: str) -> ipaddress.IPv4Network:
    """Give the bridge a free /24; start from the id's hash so concurrent jobs rarely even try the same."""
    subnets = list(_SUBNET_POOL.subnets(new_prefix=24))
    start = int(sid, 16) % len(subnets)
    for subnet in subnets[start:] + subnets[:start]:
        if any(subnet.overlaps(used) for used in _used_networks()):
            continue
        address = f"{subnet.network_address + 1}/24"
        run(["ip", "addr", "add", address, "dev", bridge])
        # Another job may have claimed the same /24 between the check and the add: back off if so.
        rivals = [link for link in _links_with(subnet) if link != bridge]
        if not rivals:
            return subnet
        run(["ip", "addr", "del", address, "dev", bridge])
    raise NetnsError(f"no free /24 left in {_SUBNET_POOL} for the testbed bridge")


def _links_with(subnet: ipaddress.IPv4Network) -> list[str]:
    links = json.loads(run(["ip", "-j", "-4", "addr", "show"]) or "[]")
    return [
        link["ifname"]
        for link in links
        for info in link.get("addr_info", [])
        if ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False).overlaps(subnet)
    ]


@contextlib.contextmanager
def testbed(job_id: str, machines: int, gbps: float | None, latency_ms: float) -> Iterator[Testbed]:
    """Build the bridge, namespaces and shaped veths of one job; always remove them on exit."""
    sid = short_id(job_id)
    bridge = f"gft{sid}-br"
    created_links: list[str] = []  # host veth ends, then the bridge last
    created_namespaces: list[str] = []
    previous = _interrupt_on_termination()
    try:
        run(["ip", "link", "add", bridge, "type", "bridge"])
        created_links.append(bridge)
        # The alias records the owner, so `python -m gemini_ft.realrun.testbed.netns list` can tell dead jobs from live.
        run(["ip", "link", "set", "dev", bridge, "alias", f"gemini-ft {job_id} pid {os.getpid()}"])
        subnet = _claim_subnet(bridge, sid)
        run(["ip", "link", "set", bridge, "up"])
        members = []
        for i in range(machines):
            namespace, host, peer = f"gft-{sid}-m{i}", f"gft{sid}-m{i}", f"gft{sid}-n{i}"
            address = str(subnet.network_address + 10 + i)
            run(["ip", "netns", "add", namespace])
            created_namespaces.append(namespace)
            run(["ip", "link", "add", host, "type", "veth", "peer", "name", peer])
            created_links.insert(0, host)
            run(["ip", "link", "set", peer, "netns", namespace])
            run(["ip", "-n", namespace, "link", "set", peer, "name", IFNAME])
            run(["ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", IFNAME])
            run(["ip", "-n", namespace, "link", "set", IFNAME, "up"])
            run(["ip", "-n", namespace, "link", "set", "lo", "up"])  # gloo's and torchrun's own loopback use
            run(["ip", "link", "set", host, "master", bridge])
            run(["ip", "link", "set", host, "up"])
            for tail in shaping_commands(gbps, latency_ms):
                run(["tc", "qdisc", "add", "dev", host, *tail])  # bridge -> machine
                run(["tc", "-n", namespace, "qdisc", "add", "dev", IFNAME, *tail])  # machine -> bridge
            members.append(Machine(i, namespace, address, host))
        yield Testbed(sid, bridge, str(subnet.network_address + 1), tuple(members))
    finally:
        # A second Ctrl-C must not cut the removal short: hold the signals until it is done.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        try:
            _remove(created_links, created_namespaces)
        finally:
            _restore(previous)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _remove(links: list[str], namespaces: list[str]) -> None:
    """Delete what one job created; report what could not be deleted after trying everything."""
    failures = []
    for namespace in namespaces:
        # Only our launcher's processes run in our namespaces; none may keep one alive after us.
        with contextlib.suppress(NetnsError):
            for pid in run(["ip", "netns", "pids", namespace]).split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
    # A veth end's deletion takes its peer with it at once; a namespace's deletion does so only later.
    for link in links:
        if _link_exists(link):
            try:
                run(["ip", "link", "del", link])
            except NetnsError as exc:
                failures.append(str(exc))
    for namespace in namespaces:
        try:
            run(["ip", "netns", "del", namespace])
        except NetnsError as exc:
            failures.append(str(exc))
    if failures:
        raise NetnsError("could not remove the testbed: " + "; ".join(failures))


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True).returncode == 0


def _interrupt_on_termination() -> dict:
    """SIGTERM/SIGHUP raise KeyboardInterrupt so the `finally` that removes the testbed runs."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    for sig, handler in previous.items():
        if handler in (signal.SIG_DFL, None):  # a caller's own handler (the launcher's) stays in charge
            signal.signal(sig, _raise_interrupt)
    return previous


def _restore(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def find_leftovers(sid: str = "") -> dict[str, list[str]]:
    """Testbed namespaces and interfaces on this host (of job `sid`, or of every job) and their owners."""
    names = [entry["name"] for entry in json.loads(run(["ip", "-j", "netns", "list"]) or "[]")]
    links = json.loads(run(["ip", "-j", "link", "show"]) or "[]")
    found: dict[str, list[str]] = {"namespaces": [], "links": [], "owners": []}
    found["namespaces"] = [n for n in names if (m := _NS_RE.match(n)) and m.group(1).startswith(sid)]
    for link in links:
        name = link["ifname"].split("@")[0]
        if (m := _LINK_RE.match(name)) and m.group(1).startswith(sid):
            found["links"].append(name)
            if m.group(2) == "br" and link.get("ifalias"):
                found["owners"].append(link["ifalias"])
    return found


def owner_alive(alias: str) -> bool:
    """Whether the launcher named in a bridge alias (`gemini-ft <job> pid <pid>`) still runs."""
    pid = alias.rsplit(" ", 1)[-1]
    return pid.isdigit() and os.path.exists(f"/proc/{pid}")


def remove_leftovers(sid: str) -> dict[str, list[str]]:
    """Remove the namespaces and interfaces of dead job `sid` (six hex digits); returns what it removed."""
    if not re.fullmatch(r"[0-9a-f]{6}", sid):
        raise UserError("job id", sid, "expected the six hex digits of a testbed name (gft-<id>-m0)")
    found = find_leftovers(sid)
    if any(owner_alive(alias) for alias in found["owners"]):
        raise UserError("job id", sid, f"its launcher still runs ({', '.join(found['owners'])}); stop it")
    links = sorted(found["links"], key=lambda name: name.endswith("-br"))  # veths before the bridge
    _remove(links, found["namespaces"])
    deadline = time.time() + 5
    while time.time() < deadline and any(find_leftovers(sid)[kind] for kind in ("namespaces", "links")):
        time.sleep(0.05)  # a namespace's own devices disappear asynchronously
    return found


def main(argv: list[str]) -> int:
    """`python -m gemini_ft.realrun.testbed.netns list` or `python -m gemini_ft.realrun.testbed.netns remove <id>`."""
    if argv[:1] == ["list"] and len(argv) == 1:
        print(json.dumps(find_leftovers(), indent=2))
        return 0
    if argv[:1] == ["remove"] and len(argv) == 2:
        try:
            print(json.dumps(remove_leftovers(argv[1]), indent=2))
        except (UserError, NetnsError) as exc:
            print(f"gemini_ft.realrun.testbed.netns: error: {exc}", file=sys.stderr)
            return 2
        return 0
    print(
        "usage: python -m gemini_ft.realrun.testbed.netns list | remove <six-hex-digit job id>",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
