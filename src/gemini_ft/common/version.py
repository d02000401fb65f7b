"""The installed distribution's version, recorded in every result file and printed by `--version`.

It lives at the bottom layer so that every package can stamp its files without importing the CLI.
`__version__` is looked up on first use: reading the installed metadata (importlib.metadata and a scan
of the import path) costs more than a small simulation that never writes a file.
"""

from __future__ import annotations

import functools


@functools.cache
def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gemini-ft")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+source"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return installed_version()
    raise AttributeError(f"module 'gemini_ft.common.version' has no attribute {name!r}")
