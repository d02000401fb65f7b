"""Geometry checks on drawn figures: where legends sit against the data, and how big text shows on the
report page. (Not in conftest.py: test modules import these, like analysis_data.)"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.transforms import Bbox

from gemini_ft.analysis.style import PAGE_WIDTH_PX, PNG_DPI


def draw(fig: Figure):
    """Lay the figure out as save_figure would (constrained layout runs at draw) and return the renderer."""
    fig.set_dpi(PNG_DPI)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def legends(fig: Figure) -> list[Legend]:
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]


def data_points(ax: Axes) -> np.ndarray:
    """Display coordinates of every drawn data vertex: line points, band and error-bar vertices, bar corners."""
    points = [np.empty((0, 2))]
    for line in ax.get_lines():
        xy = np.asarray(line.get_xydata(), dtype=float)
        points.append(ax.transData.transform(xy[np.isfinite(xy).all(axis=1)]))
    for collection in ax.collections:
        transform = collection.get_transform()
        for path in collection.get_paths():
            points.append(transform.transform(path.vertices))
    for patch in ax.patches:
        extent = patch.get_window_extent()
        if extent.width > 0 and extent.height > 0:
            points.append(extent.corners())
    xy = np.concatenate(points)
    # Only what the axes actually show: clipped-away vertices (a band beyond the y limits) are not drawn.
    return xy[_inside(ax.get_window_extent(), xy)]


def _inside(box: Bbox, xy: np.ndarray) -> np.ndarray:
    return (xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1) & (xy[:, 1] >= box.y0) & (xy[:, 1] <= box.y1)


def _overlap(a: Bbox, b: Bbox) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def legend_problems(fig: Figure) -> list[str]:
    """Every way a legend of `fig` hides something: data under it, an axes it sits in, a label it covers,
    or a part cut off by the figure's edge. Empty when every legend is clear."""
    renderer = draw(fig)
    problems = []
    for legend in legends(fig):
        box = legend.get_window_extent(renderer)
        name = repr([t.get_text() for t in legend.get_texts()][:2])
        if not fig.bbox.contains(box.x0, box.y0) or not fig.bbox.contains(box.x1, box.y1):
            problems.append(f"legend {name} is cut off by the figure edge")
        for ax in fig.axes:
            points = data_points(ax)
            inside = _inside(box, points)
            if inside.any():
                problems.append(f"legend {name} covers {int(inside.sum())} data points of {ax.get_title()!r}")
            if _overlap(box, ax.get_window_extent(renderer)):
                problems.append(f"legend {name} lies inside the axes {ax.get_title()!r}")
            labels = [ax.xaxis.label, ax.yaxis.label, ax.title, *ax.get_xticklabels(), *ax.get_yticklabels()]
            for text in labels:
                if text.get_text() and text.get_visible() and _overlap(box, text.get_window_extent(renderer)):
                    problems.append(f"legend {name} covers the label {text.get_text()!r}")
    return problems


def shown_px(fig: Figure, size_pt: float) -> float:
    """Height in screen pixels of `size_pt` text once the PNG is scaled to fit the report page."""
    width_px = fig.get_figwidth() * PNG_DPI
    return size_pt * PNG_DPI / 72 * min(1.0, PAGE_WIDTH_PX / width_px)


def smallest_legend_px(fig: Figure) -> float:
    sizes = [t.get_fontsize() for legend in legends(fig) for t in legend.get_texts()]
    return shown_px(fig, min(sizes))
