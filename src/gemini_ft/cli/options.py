"""How every subcommand declares its options: one-line parse errors, help that shows defaults and
choices, the shared scenario arguments, and flags generated from a pydantic config model.

Generated flags take their help text, default and type from the model's fields, so a config field
and its flag can never disagree; the model still validates the values (one error format for all).
"""

from __future__ import annotations

import argparse
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gemini_ft.scenarios import preset_names


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the usage block before an error; we print one line and exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:  # type: ignore[override]
        self.exit(2, f"{self.prog.split()[0]}: error: {_our_format(message)}\n")


def _our_format(message: str) -> str:
    """argparse's "argument --x: invalid choice: 'v' (choose from 'a', 'b')" in the form of every other
    error: "--x = 'v': allowed: a, b"."""
    match = re.fullmatch(r"argument ([^:]+): invalid choice: (.+?) \(choose from (.+)\)", message)
    if match is None:
        return message
    flag = match.group(1).split("/")[-1]
    return f"{flag} = {match.group(2)}: allowed: {match.group(3).replace(chr(39), '')}"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (when it has one worth showing)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "(default" in text
            or default is None
            or isinstance(default, bool)  # a switch: its help says what it turns on or off
            or default == argparse.SUPPRESS
            or (isinstance(default, list | tuple) and not default)
            or isinstance(action, argparse._VersionAction | argparse._HelpAction)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: {_show_default(default)})"


def _show_default(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def add_scenario_arguments(parser: argparse.ArgumentParser, *, positional: bool = True) -> None:
    """NAME|PATH (a preset or a TOML file) and `--set section.field=value`."""
    if positional:
        parser.add_argument(
            "scenario",
            metavar="NAME|PATH",
            help=f"a preset ({', '.join(preset_names())}) or a scenario TOML file",
        )
    add_set_argument(parser)


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a scenario field (repeatable; values read as TOML), e.g. --set cluster.machines=128;"
        " a field the [sweep] table varies is fixed to the value",
    )


def add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    """`--workers N` and `--dask ADDRESS|local`: where the runs of a sweep (or of `advise`) execute."""
    import os

    parser.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), metavar="N", help="worker processes"
    )
    parser.add_argument(
        "--dask",
        metavar="ADDRESS|local",
        help="run on a Dask distributed scheduler, e.g. tcp://host:8786 ('local' starts one); Dask exchanges"
        " pickles, so this command unpickles what that address sends: give only a scheduler you trust",
    )


def add_adaptive_arguments(parser: argparse.ArgumentParser) -> None:
    """`--target-ci HALF_WIDTH`: add seeds until every point's ratio interval is that narrow."""
    parser.add_argument(
        "--target-ci",
        type=float,
        metavar="HALF_WIDTH",
        help="add seeds (doubling) until the effective ratio's 95%% interval half-width is at most this"
        " at every point, e.g. 0.005",
    )
    parser.add_argument(
        "--max-seeds", type=int, default=64, metavar="S", help="with --target-ci: the most seeds per point"
    )


def add_tracking_arguments(parser: argparse.ArgumentParser) -> None:
    """`--track`, `--track-dir`, `--track-online`: one entry per grid point in TensorBoard or W&B."""
    parser.add_argument(
        "--track",
        default="none",
        choices=("none", "tensorboard", "wandb"),
        help="log one entry per grid point (scenario fields as hyperparameters, ratio and waste as metrics)",
    )
    parser.add_argument(
        "--track-dir", type=Path, metavar="DIR", help="tracking directory (default: OUT/track)"
    )
    parser.add_argument(
        "--track-online",
        action="store_true",
        help="with --track wandb: sync to the W&B server (default: offline)",
    )


def load_scenario_from(args: argparse.Namespace, extra: dict[str, Any] | None = None):
    """The scenario named by `args.scenario` with `--set` overrides (and `extra` ones) applied."""
    from gemini_ft.scenarios.loader import load_scenario
    from gemini_ft.scenarios.overrides import parse_overrides

    overrides = parse_overrides(args.overrides)
    overrides.update(extra or {})
    return load_scenario(args.scenario, overrides)


def positive_int(flag: str, value: int | None) -> None:
    from gemini_ft.common.errors import UserError

    if value is not None and value < 1:
        raise UserError(flag, value, "must be an integer ≥ 1")


# ---- flags from a pydantic model ------------------------------------------------------------------
def add_model_flags(
    parser: argparse.ArgumentParser,
    model: type,
    *,
    names: dict[str, str] | None = None,
    metavars: dict[str, str] | None = None,
    skip: Sequence[str] = (),
) -> dict[str, str]:
    """One flag per field of the pydantic `model` (help = its description, default = its default).

    `names` renames a field's flag (e.g. {"failures": "--fail"}); a bool field that defaults to True
    gets a `--no-…` flag. Values are passed through untyped where the model knows better (Literal
    choices, paths), so the model's validation gives every error. Returns {field: flag}.
    """
    names = names or {}
    metavars = metavars or {}
    flags: dict[str, str] = {}
    for field, info in model.model_fields.items():  # type: ignore[attr-defined]
        if field in skip:
            continue
        annotation, default = info.annotation, info.default
        help_text = (info.description or "").rstrip(".")
        choices = _literal_choices(annotation)
        if choices:
            help_text += f"; one of: {', '.join(map(str, choices))}"
        if annotation is bool:
            flag = names.get(field, ("--no-" if default else "--") + field.replace("_", "-"))
            if default:
                help_text = f"turn off: {help_text[:1].lower()}{help_text[1:]}"
            action = "store_false" if default else "store_true"
            parser.add_argument(flag, dest=field, action=action, help=help_text)
        elif _is_sequence(annotation):
            flag = names.get(field, "--" + field.replace("_", "-"))
            parser.add_argument(
                flag,
                dest=field,
                action="append",
                default=[],
                metavar=metavars.get(field, "SPEC"),
                help=help_text,
            )
        else:
            flag = names.get(field, "--" + field.replace("_", "-"))
            parser.add_argument(
                flag,
                dest=field,
                type=_scalar_type(annotation),
                default=default,
                metavar=metavars.get(field, _metavar(annotation, field)),
                help=help_text,
            )
        flags[field] = flag
    return flags


def model_values(args: argparse.Namespace, flags: dict[str, str]) -> dict[str, Any]:
    """The parsed values of generated flags, by field name (sequences as tuples)."""
    return {
        field: tuple(value) if isinstance(value := getattr(args, field), list) else value for field in flags
    }


def _args_of(annotation: Any) -> tuple[Any, ...]:
    return (
        typing.get_args(annotation)
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
        else ()
    )


def _non_none(annotation: Any) -> Any:
    members = [a for a in _args_of(annotation) if a is not type(None)]
    return members[0] if len(members) == 1 else annotation


def _literal_choices(annotation: Any) -> tuple[Any, ...]:
    annotation = _non_none(annotation)
    return typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else ()


def _is_sequence(annotation: Any) -> bool:
    return typing.get_origin(_non_none(annotation)) in (tuple, list)


def _scalar_type(annotation: Any) -> Any:
    base = _non_none(annotation)
    if base in (int, float):
        return _number(base)
    return str  # strings, paths and literals: the model converts and checks them


def _number(kind: type) -> Any:
    def convert(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}"
            ) from None

    convert.__name__ = kind.__name__
    return convert


def _metavar(annotation: Any, field: str) -> str:
    choices = _literal_choices(annotation)
    if choices:
        return "{" + ",".join(map(str, choices)) + "}"
    base = _non_none(annotation)
    if base is Path:
        return "DIR" if field in ("out",) or field.endswith("_dir") else "PATH"
    return {int: "N", float: "X"}.get(base, field.upper())


# ---- output paths, checked before any work starts -------------------------------------------------
def check_output(flag: str, path: Path, *, kind: str) -> Path:
    """`path` can be written as a `kind` ('file', 'dir', or 'parquet': a file whose name ends in
    .parquet): refuse now, not after an hour of work."""
    from gemini_ft.common.errors import UserError
    from gemini_ft.common.results_io import check_output_path  # pandas behind it: not for --help

    if kind == "parquet":
        if path.suffix != ".parquet":
            raise UserError(flag, str(path), "must be a file name ending in .parquet")
        kind = "file"
    check_output_path(flag, path, kind=kind)
    return path
