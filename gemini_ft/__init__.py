"""gemini-ft: fast failure recovery in distributed training with in-memory checkpoints.

The console command lives in `gemini_ft.cli`; the work lives in the packages `scenarios`, `sim`,
`realrun`, `calibration` and `analysis`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gemini-ft")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
