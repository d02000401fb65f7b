"""`--set section.field=value` overrides and `[sweep]` tables as plain data, before validation.

Paths are dotted field paths (`cluster.machines`); values are read as TOML, bare words as strings.
Applying an override to a field that the `[sweep]` table varies narrows the sweep to that value.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from gemini_ft.common.errors import UserError


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


def apply_overrides(
    data: Mapping[str, Any], overrides: Mapping[str, Any], known: Mapping[str, list[str]]
) -> dict[str, Any]:
    """A deep copy of `data` with each dotted path set; `known` lists the fields per section path.

    A path that the data's `[sweep]` table varies is removed from the sweep: the override fixes it.
    """
    result = copy.deepcopy(dict(data))
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
    if overrides and isinstance(result.get("sweep"), Mapping):
        result["sweep"] = {p: v for p, v in flatten_sweep(result["sweep"]).items() if p not in overrides}
    return result


def _unknown_path_hint(path: str, known: Mapping[str, list[str]]) -> str:
    section = path.rsplit(".", 1)[0] if "." in path else ""
    if section in known:
        where = f"in [{section}]" if section else "at the top level"
        return f"unknown field; allowed {where}: {', '.join(known[section])}"
    return f"unknown section; allowed: {', '.join(s for s in known if s)}"


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
