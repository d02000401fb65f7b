"""`gemini-ft scenarios list|show|validate`: see the presets and check scenario files."""

from __future__ import annotations

import argparse

from scenarios.loader import expand_sweep, load_scenario, preset_names, resolve_path, to_toml


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("scenarios", help="list, show and validate scenarios")
    commands = parser.add_subparsers(dest="scenarios_command", metavar="ACTION", required=True)

    commands.add_parser("list", help="list the preset scenarios").set_defaults(func=_list)

    show = commands.add_parser("show", help="print a scenario resolved, as TOML")
    show.add_argument("scenario", metavar="NAME|PATH")
    add_set_argument(show)
    show.set_defaults(func=_show)

    check = commands.add_parser("validate", help="check a scenario file (and every sweep point)")
    check.add_argument("scenario", metavar="PATH")
    add_set_argument(check)
    check.set_defaults(func=_validate)


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """The `--set section.field=value` option shared by every command that reads a scenario."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a scenario field (repeatable), e.g. --set cluster.machines=128",
    )


def _list(args: argparse.Namespace) -> int:
    names = preset_names()
    width = max(len(name) for name in names)
    for name in names:
        scenario = load_scenario(name)
        print(f"{name:<{width}}  {scenario.description}")
    return 0


def _show(args: argparse.Namespace) -> int:
    print(to_toml(load_scenario(args.scenario, args.overrides)), end="")
    return 0


def _validate(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario, args.overrides)
    points = len(expand_sweep(scenario))
    print(
        f"{resolve_path(args.scenario)}: valid ({points} sweep point{'s' if points != 1 else ''} × {scenario.run.seeds} seeds)"
    )
    return 0
