"""The subcommands of `gemini-ft` and their one-line help, in the order `gemini-ft --help` lists them.

Kept apart from the subcommand modules so the command line can list every subcommand, and build only
the one being run, without importing the others (realrun's flags alone come from a pydantic model).
"""

from __future__ import annotations

COMMANDS: dict[str, str] = {
    "scenarios": "list, show and validate scenarios",
    "placement": "probability that every checkpoint survives k simultaneous failures, per placement",
    "simulate": "simulate one scenario over its seeds",
    "sweep": "run the scenario's [sweep] grid × seeds",
    "advise": "search policy × interval × replicas × placement × standby machines for the best ratio",
    "interleave": "checkpoint traffic interleaving: iteration time and buffer per scheme (paper §5)",
    "realrun": "train a GPT with DDP + in-memory checkpoints on local emulated machines, with failures",
    "calibrate": "fit simulator parameters from realrun measurements into a scenario TOML",
    "validate": "compare a calibrated scenario's predictions with held-out measurements",
    "plot": "draw the figures a result file supports (PNG + PDF + CSV)",
    "report": "run the preset sweeps and write every paper figure plus index.html",
}

# Subcommands whose numerical work is the simulator and its tables: none calls BLAS or needs a pydantic
# plugin, so they start without OpenBLAS's thread pool and pydantic's plugin search (see
# `gemini_ft.cli.lighten_simulator_start`). Not realrun (torch and its torchrun children keep their
# threads), nor calibrate/validate/plot.
SIMULATOR_COMMANDS = frozenset({"simulate", "sweep", "advise", "interleave", "placement", "report"})
