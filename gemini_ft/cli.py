"""The `gemini-ft` console command: one subcommand per thing a user does.

Each package owns its subcommands in its own `cli` module, which exposes `register(subparsers)`;
this module only assembles them and turns user mistakes into one-line errors with exit status 2.
Subcommand modules import their heavy dependencies (torch, simpy, matplotlib) inside the handler, so
`gemini-ft --help` stays fast and `sim` works without torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from gemini_ft import __version__
from scenarios.errors import UserError, format_validation_error

# Order is the order in `gemini-ft --help`.
_COMMAND_MODULES = (
    "scenarios.cli",
    "sim.placement_cli",
    "sim.cli",
    "sim.interleave_cli",
    "calibration.cli",
    "realrun.cli",
    "analysis.cli",
)


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the usage block before an error; we print one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="gemini-ft",
        description="Failure recovery with in-memory checkpoints: simulate, run for real, plot.",
    )
    parser.add_argument("--version", action="version", version=f"gemini-ft {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    subparsers.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"gemini-ft: error: {exc}", file=sys.stderr)
    except ValidationError as exc:
        print(f"gemini-ft: error: {format_validation_error(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        print("gemini-ft: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
