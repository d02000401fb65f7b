"""`gemini-ft scenarios list|show|validate`: see the presets and check scenario files."""

from __future__ import annotations

import argparse

from gemini_ft.cli.commands import COMMANDS
from gemini_ft.cli.options import add_scenario_arguments, add_set_argument, load_scenario_from


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("scenarios", help=COMMANDS["scenarios"])
    commands = parser.add_subparsers(dest="scenarios_command", metavar="ACTION", required=True)

    commands.add_parser("list", help="list the preset scenarios").set_defaults(func=_list)

    show = commands.add_parser("show", help="print a scenario resolved, as TOML")
    add_scenario_arguments(show)
    show.set_defaults(func=_show)

    check = commands.add_parser("validate", help="check a scenario file (and every sweep point)")
    check.add_argument("scenario", metavar="PATH", help="a scenario TOML file (or a preset name)")
    add_set_argument(check)
    check.set_defaults(func=_validate)
    return parser


def _list(args: argparse.Namespace) -> int:
    from gemini_ft.scenarios.loader import load_scenario, preset_names

    names = preset_names()
    width = max(len(name) for name in names)
    for name in names:
        print(f"{name:<{width}}  {load_scenario(name).description}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from gemini_ft.scenarios.loader import to_toml

    print(to_toml(load_scenario_from(args)), end="")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from gemini_ft.scenarios.loader import resolve_path

    scenario = load_scenario_from(args)
    points = scenario.sweep_points
    print(
        f"{resolve_path(args.scenario)}: valid ({points} sweep point{'s' if points != 1 else ''}"
        f" × {scenario.run.seeds} seeds)"
    )
    return 0
