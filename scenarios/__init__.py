"""Scenarios: the validated schema shared by every part of gemini-ft, TOML presets and overrides.

`load_scenario(name_or_path, overrides)` is the entry point; `Scenario` is the model. Both are loaded
on first use, so importing a light submodule (`scenarios.version`, `scenarios.placements`) does not
pay for pydantic.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Scenario", "expand_sweep", "load_scenario", "preset_names", "to_toml"]


def __getattr__(name: str) -> Any:
    if name == "Scenario":
        from scenarios.schema import Scenario

        return Scenario
    if name in __all__:
        from scenarios import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'scenarios' has no attribute {name!r}")
