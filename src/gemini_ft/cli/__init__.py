"""The `gemini-ft` console command: one subcommand per thing a user does, one module per subcommand.

This package is the top layer: it parses flags, calls the library (`scenarios`, `sim`, `realrun`,
`calibration`, `analysis`) and prints what comes back. Library errors name fields; `main` turns them
into one line naming the flag the user typed, with exit status 2. Subcommand modules import their
heavy dependencies inside the handler, so `gemini-ft --help` stays fast and `sim` runs without torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence

from gemini_ft.cli.commands import COMMANDS, SIMULATOR_COMMANDS
from gemini_ft.cli.options import OneLineParser

EVERY = "every"  # build_parser's default: every subcommand with its flags


def build_parser(only: str | None = EVERY) -> argparse.ArgumentParser:
    """The command line. With `only` naming a subcommand, only that one gets its flags (and its module
    imported) and the others are one-line entries; with None, all are: enough for `--help` and errors."""
    parser = OneLineParser(
        prog="gemini-ft",
        description="Failure recovery with in-memory checkpoints: simulate, run for real, calibrate, plot.",
    )
    parser.add_argument("--version", action=_Version, help="show the program's version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    subparsers.required = True
    for name, help_text in COMMANDS.items():
        if only in (EVERY, name):
            subcommand = importlib.import_module(f"gemini_ft.cli.{name}").register(subparsers)
            subcommand.set_defaults(flags=_flags_of(subcommand))
        else:
            subparsers.add_parser(name, help=help_text)
    return parser


class _Version(argparse.Action):
    """`--version`: the installed version, read only when asked for (argparse's own action needs the
    string when the parser is built, which every command would pay for)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from gemini_ft.common.version import installed_version

        print(f"gemini-ft {installed_version()}")
        parser.exit()


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` runs: its first word that is not an option (the top level's options,
    --help and --version, take no value), or None when that is no subcommand."""
    word = next((arg for arg in argv if not arg.startswith("-")), None)
    return word if word in COMMANDS else None


def _flags_of(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest → the flag a user types (its long form), for naming flags in library errors."""
    flags: dict[str, str] = {}
    for action in parser._actions:
        if action.option_strings:
            flags.setdefault(action.dest, max(action.option_strings, key=len))
        elif isinstance(action, argparse._SubParsersAction):  # `scenarios show|validate` have their own
            for nested in action.choices.values():
                for dest, flag in _flags_of(nested).items():
                    flags.setdefault(dest, flag)
    return flags


def lighten_simulator_start(command: str | None) -> None:
    """For the simulator's commands, skip two start-up costs that buy them nothing, unless the user set
    the variables: OpenBLAS's thread pool and pydantic's plugin search.

    OpenBLAS starts a thread pool (one thread per core, up to 64) as numpy loads, and its threads spin
    before they sleep: CPU time paid by every short command for BLAS calls the simulator never makes.
    Pydantic looks for plugins (observers of validation, such as tracing) by reading the entry points
    of every installed distribution when it builds its first model; the scenario's results do not
    depend on them (`PYDANTIC_DISABLE_PLUGINS=` keeps them). Both variables are read once, at numpy's
    load and at the first model, so they are set before either; sweep workers (process pool, local
    Dask cluster) inherit them from this process's environment. In a process that has loaded numpy
    already (a test, a notebook calling `main`) the first would change nothing and both would reach
    later child processes, so they are left alone there."""
    if command in SIMULATOR_COMMANDS and "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command(argv)
    lighten_simulator_start(command)
    # Building every subcommand's flags costs more than a small simulation: build only the one run.
    parser = build_parser(command)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a one-line parse error: its status is the answer
        return exc.code if isinstance(exc.code, int) else 2
    from pydantic import ValidationError

    from gemini_ft.common.errors import UserError, format_validation_error, printable

    flags: dict[str, str] = getattr(args, "flags", {})
    _print_library_warnings()
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"gemini-ft: error: {printable(_name_flag(exc, flags))}", file=sys.stderr)
    except ValidationError as exc:
        print(
            f"gemini-ft: error: {printable(_flagged(format_validation_error(exc), flags))}", file=sys.stderr
        )
    except KeyboardInterrupt:
        print("gemini-ft: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `gemini-ft ... | head`: the reader left; say nothing more and do not flush into a closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 2


def _print_library_warnings() -> None:
    """The library logs (`logging`); the command prints its warnings as one line each on stderr."""
    import logging

    class Stderr(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            print(f"gemini-ft: {record.getMessage()}", file=sys.stderr)  # whatever sys.stderr is now

    logger = logging.getLogger("gemini_ft")
    if not any(type(handler).__name__ == "Stderr" for handler in logger.handlers):
        logger.addHandler(Stderr(logging.WARNING))
    logger.setLevel(logging.WARNING)


def _name_flag(exc, flags: dict[str, str]) -> str:
    """A library error names fields (`replicas`); the user typed flags (`--replicas`)."""
    field = getattr(exc, "field", None)
    if field in flags and hasattr(exc, "allowed"):
        # Other fields named in the explanation ("needs replicas (3) to divide machines (4)") too.
        allowed = re.sub(
            r"(?<![-\w])([a-z][a-z_]*)(?= \(| =)",
            lambda m: flags.get(m.group(1), m.group(1)),
            str(exc.allowed),
        )
        return type(exc)(flags[field], exc.value, allowed).args[0]
    return str(exc)


def _flagged(message: str, flags: dict[str, str]) -> str:
    """Each `field = value: reason` of a joined validation message, with the field's flag."""
    parts = []
    for part in message.split("; "):
        field, sep, rest = part.partition(" = ")
        parts.append(f"{flags[field]} = {rest}" if sep and field in flags else part)
    return "; ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
