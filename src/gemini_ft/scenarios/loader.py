"""Load, override, expand and print scenarios.

A scenario is a TOML file (or a preset name) validated into `Scenario`; `--set section.field=value`
overrides any field; `expand_sweep` turns the `[sweep]` table into the list of concrete scenarios
(the cartesian product, in a stable order). `to_toml` prints a resolved scenario back as TOML.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePath
from typing import Any

from gemini_ft.common.errors import UserError
from gemini_ft.scenarios import PRESET_DIR, preset_names
from gemini_ft.scenarios.overrides import apply_overrides as _apply
from gemini_ft.scenarios.overrides import flatten_sweep, parse_overrides, parse_value
from gemini_ft.scenarios.schema import Scenario, allowed_fields

__all__ = [
    "apply_overrides", "expand_sweep", "flatten_sweep", "from_toml_text", "load_scenario", "parse_overrides",
    "parse_value", "preset_names", "read_toml", "resolve_path", "to_toml", "validate",
]  # fmt: skip


def resolve_path(name_or_path: str | Path) -> Path:
    """A preset name or a path to a TOML file."""
    if not isinstance(name_or_path, str | PurePath):
        raise UserError("scenario", name_or_path, "a preset name, a TOML path or a Scenario")
    path = Path(name_or_path)
    try:
        exists = path.exists()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise UserError("scenario", str(name_or_path), f"not a file ({exc.strerror})") from None
    if path.suffix == ".toml" or exists:
        if not path.is_file():
            raise UserError("scenario", str(name_or_path), "no such file")
        return path
    preset = PRESET_DIR / f"{name_or_path}.toml"
    if not preset.is_file():
        raise UserError(
            "scenario", str(name_or_path), f"not a file; presets are: {', '.join(preset_names())}"
        )
    return preset


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(str(path), "<file>", f"malformed TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(str(path), "<file>", f"cannot be read: {exc}") from None


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of scenario `data` with each dotted path set; unknown paths are errors."""
    return _apply(data, overrides, allowed_fields())


def validate(data: Mapping[str, Any], source: str = "") -> Scenario:
    """Scenario data (as read from TOML) → a validated `Scenario`; errors name the field path."""
    return Scenario.from_data(data, source)


def load_scenario(name_or_path: str | Path, overrides: Iterable[str] | Mapping[str, Any] = ()) -> Scenario:
    """Read a preset or TOML file, apply `--set` overrides, validate (sweep paths included)."""
    path = resolve_path(name_or_path)
    data = read_toml(path)
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(overrides)
    data = apply_overrides(data, overrides)
    scenario = validate(data, source=str(path) if path.parent != PRESET_DIR else "")
    for _ in iter_sweep(scenario):  # a bad sweep value must fail now, not halfway through a sweep
        pass  # (each point is validated and dropped: the grid is never held to check it)
    return scenario


def iter_sweep(scenario: Scenario) -> Iterator[tuple[dict[str, Any], Scenario]]:
    """Each point of the sweep grid in turn as (the swept values, the concrete scenario without a sweep)."""
    base = scenario.model_dump(mode="python", exclude={"sweep"})
    paths = list(scenario.sweep)
    for values in itertools.product(*(scenario.sweep[p] for p in paths)):
        point = dict(zip(paths, values, strict=True))
        yield point, Scenario.from_data(apply_overrides(base, point), source=f"sweep point {point}")


def expand_sweep(scenario: Scenario) -> list[tuple[dict[str, Any], Scenario]]:
    """Every point of the sweep grid as (the swept values, the concrete scenario without a sweep)."""
    return list(iter_sweep(scenario))


def to_toml(scenario: Scenario) -> str:
    """The resolved scenario as TOML (None fields are omitted: TOML has no null)."""
    import tomli_w  # only to write TOML: loading a scenario (every command) does without it

    data = scenario.model_dump(mode="json", exclude_none=True)
    if not data.get("sweep"):
        data.pop("sweep", None)
    return tomli_w.dumps(data)


def from_toml_text(text: str) -> Scenario:
    """Parse a scenario printed by `to_toml` (e.g. the one stored in a result file)."""
    return validate(tomllib.loads(text))
