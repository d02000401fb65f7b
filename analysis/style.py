"""One visual style for every figure: seaborn theme, policy colours, figure creation and saving.

Figures are built on `matplotlib.figure.Figure` directly (not pyplot), so plotting holds no global
state and needs no interactive backend; `save_figure` writes the PNG and PDF next to each other.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

POLICY_ORDER = ("gemini", "highfreq", "strawman", "young-daly")
POLICY_LABELS = {
    "gemini": "Gemini",
    "highfreq": "HighFreq",
    "strawman": "Strawman",
    "young-daly": "Young-Daly",
}
_COLOURS = sns.color_palette("colorblind", 10)
POLICY_COLOURS = {policy: _COLOURS[i] for i, policy in enumerate(POLICY_ORDER)}
# Bootstrap confidence intervals are resampled; a fixed seed keeps the figures reproducible.
CI = ("ci", 95)
BOOT_SEED = 0

P = ParamSpec("P")
R = TypeVar("R")


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.1):
        yield


def styled(plot: Callable[P, R]) -> Callable[P, R]:
    """Draw the whole figure inside the shared style, whatever the caller's rcParams are."""

    @functools.wraps(plot)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with figure_style():
            return plot(*args, **kwargs)

    return wrapper


def new_figure(
    panels: int, width_per_panel: float = 4.6, height: float = 3.6, cols: int = 3
) -> tuple[Figure, list[Axes]]:
    """A figure with `panels` axes laid out in rows of at most `cols`."""
    cols = max(1, min(cols, panels))
    rows = -(-panels // cols)
    fig = Figure(figsize=(width_per_panel * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for extra in axes[panels:]:
        extra.remove()
    return fig, axes[:panels]


def plain_log_ticks(axis: Axis, values: object | None = None) -> None:
    """Label a log axis with plain numbers (16, 400, 0.1), at `values` when given (e.g. the Ns swept)."""
    if values is not None:
        axis.set_ticks(sorted({float(v) for v in values}))  # type: ignore[attr-defined]
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def policy_label(policy: str) -> str:
    return POLICY_LABELS.get(policy, policy)


def ordered_policies(policies: object) -> list[str]:
    """The policies present, in the paper's order (unknown ones last, alphabetically)."""
    present = sorted({str(p) for p in policies})  # type: ignore[attr-defined]
    return [p for p in POLICY_ORDER if p in present] + [p for p in present if p not in POLICY_ORDER]


def save_figure(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write `stem`.png and `stem`.pdf into `out_dir`; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths
