"""Scenarios: the validated schema shared by every part of gemini-ft, TOML presets and overrides.

`load_scenario(name_or_path, overrides)` is the entry point; `Scenario` is the model.
"""

from scenarios.loader import expand_sweep, load_scenario, preset_names, to_toml
from scenarios.schema import Scenario

__all__ = ["Scenario", "expand_sweep", "load_scenario", "preset_names", "to_toml"]
