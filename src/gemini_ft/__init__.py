"""gemini-ft: fast failure recovery in distributed training with in-memory checkpoints.

The Python API (`gemini_ft.api`) is importable from here: `import gemini_ft as g; g.simulate(...)`.
The console command lives in `gemini_ft.cli`; the work lives in the library packages `scenarios`,
`sim`, `realrun`, `calibration` and `analysis`. The API is loaded on first use, so the command's
`--help` does not pay for pandas.
"""

from __future__ import annotations

from typing import Any

_API = (
    "Results", "Scenario", "advise", "calibrate", "interleave", "load_scenario", "placement_holders",
    "presets", "read_results", "recovery_odds", "simulate", "summarize", "sweep", "validate",
)  # fmt: skip

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the installed metadata on first use
        from gemini_ft.common.version import installed_version

        return installed_version()
    if name in _API:
        from gemini_ft import api

        return getattr(api, name)
    raise AttributeError(f"module 'gemini_ft' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
