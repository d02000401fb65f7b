"""The calibrated scenario: fitted fields replaced, valid, and the same after a TOML round trip."""

from pathlib import Path

import pytest

from gemini_ft.calibration.fit import calibrate
from gemini_ft.calibration.measurements import load_runs
from gemini_ft.calibration.overlay import calibrated_scenario, overlay_toml
from gemini_ft.scenarios.loader import load_scenario
from gemini_ft.sim.policies import in_memory_costs

BASE = load_scenario("gpt2-100b-p4d")


def test_overlay_replaces_fitted_fields_and_round_trips(sized_runs: list[Path], tmp_path: Path) -> None:
    calibration = calibrate(load_runs(sized_runs), BASE)
    scenario = calibrated_scenario(calibration, BASE)
    for path, value in calibration.values().items():
        section, field = path.split(".")
        assert getattr(getattr(scenario, section), field) == value
    assert scenario.model.layers is None and scenario.recovery.serialization_s == 0.0
    # Sweeps over fields the calibration set are dropped; the policy sweep stays.
    assert list(scenario.sweep) == ["checkpoint.policy", "failures.rate_per_machine_per_day"]
    out = tmp_path / "calibrated.toml"
    out.write_text(overlay_toml(scenario, calibration))
    loaded = load_scenario(out)
    # TOML cannot say None: reloaded layers take the default, but the explicit overhead (the
    # simulator's own number for layers = None) keeps the in-memory costs identical.
    assert loaded.checkpoint.iteration_overhead_fraction == pytest.approx(in_memory_costs(scenario)[0])
    assert in_memory_costs(loaded) == pytest.approx(in_memory_costs(scenario))
    assert loaded.model_dump(exclude={"model"}) == scenario.model_dump(exclude={"model"})
    assert loaded.model.parameters == scenario.model.parameters
    assert out.read_text().startswith("# Calibrated by `gemini-ft calibrate`")
