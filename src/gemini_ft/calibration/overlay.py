"""The calibrated scenario: the base scenario with every calibrated field replaced, as TOML.

Besides the fitted fields, `model.layers`/`hidden_size` are cleared so the simulator times in-memory
checkpoints from the measured transfer and iteration rather than its architecture model. TOML has no
null (a missing field takes the schema default), so the resulting overhead — computed by the
simulator's own `in_memory_costs` — is also written to `checkpoint.iteration_overhead_fraction`,
which takes priority over the architecture and keeps the file's meaning on reload.
"""

from __future__ import annotations

from typing import Any

from gemini_ft.calibration.fit import Calibration
from gemini_ft.scenarios.loader import apply_overrides, from_toml_text, to_toml, validate
from gemini_ft.scenarios.schema import Scenario
from gemini_ft.sim.policies import in_memory_costs


def calibrated_scenario(calibration: Calibration, base: Scenario) -> Scenario:
    """`base` with the calibrated values (validated; sweep entries over calibrated fields dropped)."""
    values: dict[str, Any] = dict(calibration.values())
    values["model.layers"] = None
    values["model.hidden_size"] = None
    data = base.model_dump(mode="python")
    data["name"] = f"{base.name}-calibrated"
    data["description"] = f"{base.name} calibrated on {', '.join(calibration.runs)}"
    data["sweep"] = {path: v for path, v in base.sweep.items() if path not in values}
    data["checkpoint"]["iteration_overhead_fraction"] = None
    scenario = validate(apply_overrides(data, values), source="calibrated scenario")
    overhead, _ = in_memory_costs(scenario)
    data = apply_overrides(data, {**values, "checkpoint.iteration_overhead_fraction": overhead})
    return validate(data, source="calibrated scenario")


def overlay_toml(scenario: Scenario, calibration: Calibration) -> str:
    """The scenario as TOML, headed by comments saying what was fitted from which files."""
    lines = ["# Calibrated by `gemini-ft calibrate` from:"]
    lines += [f"#   {path}" for path in calibration.runs]
    for p in calibration.parameters:
        lines.append(f"# {p.path} = {_short(p.value)}  ({p.how})")
    text = "\n".join(lines) + "\n\n" + to_toml(scenario)
    from_toml_text(text)  # the file must load back as the same scenario
    return text


def _short(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
