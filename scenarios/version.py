"""The installed distribution's version, recorded in every result file and printed by `--version`.

It lives at the bottom layer so that every package can stamp its files without importing the CLI.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gemini-ft")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
