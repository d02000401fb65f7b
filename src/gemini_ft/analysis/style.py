"""One visual style for every figure: seaborn theme, policy colours, legends, notes, units and saving.

Figures are built on `matplotlib.figure.Figure` directly (not pyplot), so plotting holds no global
state and needs no interactive backend; `save_figure` writes the PNG and PDF next to each other.
Legends go outside the axes (`legend_beside`, `legend_below`) so they can never hide data.
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
from matplotlib.legend import Legend
from matplotlib.ticker import FuncFormatter, NullFormatter

POLICY_ORDER = ("gemini", "highfreq", "strawman", "young-daly")
POLICY_LABELS = {
    "gemini": "Gemini",
    "highfreq": "HighFreq",
    "strawman": "Strawman",
    "young-daly": "Young-Daly",
}
# One fixed colour per policy in every figure. Picked from the Okabe-Ito and Paul Tol colour-blind-safe
# sets so that the four stay far apart (CIELAB distance >= 30) for normal vision and simulated
# protanopia, deuteranopia and tritanopia, and all are dark enough to read on white; the seaborn
# "colorblind" palette's first four put HighFreq and Young-Daly in two near-identical oranges.
POLICY_COLOURS = {
    "gemini": "#332288",  # indigo
    "highfreq": "#E69F00",  # orange
    "strawman": "#EE3377",  # magenta
    "young-daly": "#33BBEE",  # cyan
}
# The widest the report page shows a figure (index.html's content max-width); a wider PNG is scaled
# down, its text with it, so figures are sized to stay readable at this width.
PAGE_WIDTH_PX = 1200
PNG_DPI = 150
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


def legend_beside(ax: Axes, **kwargs: object) -> Legend:
    """A legend to the right of `ax`, outside it (constrained layout makes room)."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)


def legend_below(ax: Axes, ncols: int = 2, **kwargs: object) -> Legend:
    """A legend under `ax`'s x label, outside it, in `ncols` columns."""
    return ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), borderaxespad=0.0, ncols=ncols, **kwargs)


def note_single_point(ax: Axes, text: str) -> None:
    """Say above `ax` that each series is one point (a lone marker reads like a plotting bug).

    The note joins the title, outside the data, so it can never hide a point; call after set_title.
    """
    title = ax.get_title()
    ax.set_title(f"{title}\n{text}" if title else text)


def human_bytes(nbytes: float) -> str:
    """A size in decimal units with three significant digits: 400576 → '401 kB', 2.5e9 → '2.5 GB'."""
    value = float(nbytes)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 999.5 or unit == "TB":
            return f"{value:.3g} {unit}"
        value /= 1000.0
    raise AssertionError("unreachable")


def size_ticks(axis: Axis, nbytes: object, scale: float = 1.0) -> None:
    """Tick a size axis at the sizes measured, labelled in human units; data are `bytes / scale`."""
    axis.set_ticks(sorted({float(v) for v in nbytes}))  # type: ignore[attr-defined]
    axis.set_major_formatter(FuncFormatter(lambda v, _: human_bytes(v * scale)))
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
    fig.savefig(paths[0], dpi=PNG_DPI)
    fig.savefig(paths[1])
    return paths
