"""The calibration parity plot (gemini_ft.analysis.calibration_figures): one point per quantity and the y = x line."""

import numpy as np
import pandas as pd
from matplotlib.collections import PathCollection

from gemini_ft.analysis.calibration_figures import plot_parity


def test_one_point_per_quantity_and_identity_line() -> None:
    table = pd.DataFrame(
        {
            "quantity": ["in-memory checkpoint", "retrieval local", "recovery total local"],
            "measured_s": [0.02, 0.004, 9.4],
            "predicted_s": [0.015, 0.005, 9.3],
        }
    )
    fig = plot_parity(table)
    (ax,) = fig.axes
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [c.get_label() for c in scatters] == list(table.quantity)
    points = np.concatenate([c.get_offsets() for c in scatters])
    assert sorted(map(tuple, points.tolist())) == sorted(
        zip(table.measured_s, table.predicted_s, strict=True)
    )
    identity = [line for line in ax.get_lines() if line.get_label() == "y = x"]
    assert len(identity) == 1
    x, y = identity[0].get_data()
    assert np.allclose(x, y) and x[0] <= 0.004 and x[-1] >= 9.4
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "measured (s)"
