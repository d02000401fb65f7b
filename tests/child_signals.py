"""Children that must hear a test's Ctrl-C start with SIGINT at its default.

A shell starts a background job with SIGINT ignored, children inherit that, and Python then installs
no Ctrl-C handler: a suite run as `nohup pytest &` would see such a child ignore the SIGINT its test
sends. Pass `preexec_fn=sigint_default` to `subprocess.Popen` (it runs in the child before exec).
"""

import signal


def sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
