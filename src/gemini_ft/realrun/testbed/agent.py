"""One emulated machine's torchrun agent, tied to the life of the launcher that started it.

The launcher runs `python -m gemini_ft.realrun.testbed.agent LAUNCHER_PID -- TORCHRUN_ARGS...`:
this asks the kernel to SIGKILL the process when its parent dies (PR_SET_PDEATHSIG, kept across
exec), makes sure the launcher did not die before that request took effect, and then becomes
torchrun itself (exec: same pid, nothing left in between). A launcher killed with SIGKILL thus takes
its agents with it; their workers follow on their own (the worker watches its agent).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    launcher, torchrun = int(argv[0]), argv[argv.index("--") + 1 :]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        print(f"agent: prctl(PR_SET_PDEATHSIG) failed: errno {ctypes.get_errno()}", file=sys.stderr)
    if os.getppid() != launcher:  # the launcher died before the request took effect
        return 1
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", *torchrun])
    return 1  # not reached: execv replaces this process


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
