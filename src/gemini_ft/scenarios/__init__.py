"""Scenarios: the validated schema shared by every part of gemini-ft, TOML presets and overrides.

`load_scenario(name_or_path, overrides)` is the entry point; `Scenario` is the model. Both are loaded
on first use, so importing the package (for a command's `--help`, say) does not pay for pydantic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["Scenario", "expand_sweep", "load_scenario", "preset_names", "to_toml"]

PRESET_DIR = Path(__file__).parent / "presets"


def preset_names() -> list[str]:
    """The preset scenarios' names (the TOML files beside the schema), without loading the schema."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.toml"))


def __getattr__(name: str) -> Any:
    if name == "Scenario":
        from gemini_ft.scenarios.schema import Scenario

        return Scenario
    if name in __all__:
        from gemini_ft.scenarios import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'gemini_ft.scenarios' has no attribute {name!r}")
