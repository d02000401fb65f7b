"""Load, override, expand and print scenarios.

A scenario is a TOML file (or a preset name) validated into `Scenario`; `--set section.field=value`
overrides any field; `expand_sweep` turns the `[sweep]` table into the list of concrete scenarios
(the cartesian product, in a stable order). `to_toml` prints a resolved scenario back as TOML.
"""

from __future__ import annotations

import copy
import itertools
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ValidationError

from scenarios.errors import InvalidScenario, UserError, format_validation_error
from scenarios.schema import Scenario, allowed_fields

PRESET_DIR = Path(__file__).parent / "presets"


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.toml"))


def resolve_path(name_or_path: str | Path) -> Path:
    """A preset name or a path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
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


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`section.field=value` strings → {path: value}; the value is read as TOML, else as a string."""
    overrides: dict[str, Any] = {}
    for item in items:
        path, sep, text = item.partition("=")
        path = path.strip()
        if not sep or not path:
            raise UserError("--set", item, "expected section.field=value, e.g. cluster.machines=128")
        overrides[path] = parse_value(text.strip())
    return overrides


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of `data` with each dotted path set; unknown paths are errors."""
    result = copy.deepcopy(dict(data))
    known = allowed_fields()
    for path, value in overrides.items():
        parts = path.split(".")
        section = ".".join(parts[:-1])
        if section not in known or parts[-1] not in known[section]:
            raise UserError(path, value, _unknown_path_hint(path, known))
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(path, value, f"{part} is not a section")
        node[parts[-1]] = value
    return result


def _unknown_path_hint(path: str, known: dict[str, list[str]]) -> str:
    section = path.rsplit(".", 1)[0] if "." in path else ""
    if section in known:
        where = f"in [{section}]" if section else "at the top level"
        return f"unknown field; allowed {where}: {', '.join(known[section])}"
    return f"unknown section; allowed: {', '.join(s for s in known if s)}"


def validate(data: Mapping[str, Any], source: str = "") -> Scenario:
    data = dict(data)
    if "sweep" in data:
        data["sweep"] = flatten_sweep(data["sweep"])
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        message = format_validation_error(exc, allowed_fields=allowed_fields())
        raise InvalidScenario(f"{source}: {message}" if source else message) from None


def flatten_sweep(sweep: Any, prefix: str = "") -> dict[str, Any]:
    """`[sweep] "a.b" = [..]` and `[sweep.a] b = [..]` both become {"a.b": [..]}."""
    if not isinstance(sweep, Mapping):
        raise UserError("sweep", sweep, "must be a table mapping field paths to lists of values")
    flat: dict[str, Any] = {}
    for key, value in sweep.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            flat.update(flatten_sweep(value, path))
        else:
            flat[path] = value
    return flat


def load_scenario(name_or_path: str | Path, overrides: Iterable[str] | Mapping[str, Any] = ()) -> Scenario:
    """Read a preset or TOML file, apply `--set` overrides, validate (sweep paths included)."""
    path = resolve_path(name_or_path)
    data = read_toml(path)
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(overrides)
    data = apply_overrides(data, overrides)
    scenario = validate(data, source=str(path) if path.parent != PRESET_DIR else "")
    expand_sweep(scenario)  # a bad sweep value must fail now, not halfway through a sweep
    return scenario


def expand_sweep(scenario: Scenario) -> list[tuple[dict[str, Any], Scenario]]:
    """Every point of the sweep grid as (the swept values, the concrete scenario without a sweep)."""
    base = scenario.model_dump(mode="python", exclude={"sweep"})
    paths = list(scenario.sweep)
    points = []
    for values in itertools.product(*(scenario.sweep[p] for p in paths)):
        point = dict(zip(paths, values, strict=True))
        data = apply_overrides(base, point)
        try:
            concrete = Scenario.model_validate(data)
        except ValidationError as exc:
            detail = format_validation_error(exc, allowed_fields=allowed_fields())
            raise InvalidScenario(f"sweep point {point}: {detail}") from None
        points.append((point, concrete))
    return points


def to_toml(scenario: Scenario) -> str:
    """The resolved scenario as TOML (None fields are omitted: TOML has no null)."""
    data = scenario.model_dump(mode="json", exclude_none=True)
    if not data.get("sweep"):
        data.pop("sweep", None)
    return tomli_w.dumps(data)


def from_toml_text(text: str) -> Scenario:
    """Parse a scenario printed by `to_toml` (e.g. the one stored in a result file)."""
    return validate(tomllib.loads(text))
