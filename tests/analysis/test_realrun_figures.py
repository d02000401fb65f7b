"""The real-runner figure: saving and recovery panels, one series per event or source."""

from __future__ import annotations

import pandas as pd
import pytest

from gemini_ft.analysis.realrun_figures import plot_measurements
from gemini_ft.common.errors import UserError


def test_measurements_save_and_recovery_series(measurements: pd.DataFrame) -> None:
    save, recovery = plot_measurements(measurements).axes
    for ax in (save, recovery):
        assert ax.get_xlabel() == "Checkpoint shard size"  # the unit is in each tick label: 16 MB, 1.2 GB
        assert ax.get_ylabel() == "Time (s)"
        assert all(len(line.get_xdata()) == 2 for line in ax.get_lines())
    assert [t.get_text() for t in save.get_legend().get_texts()] == [
        "in-memory snapshot",
        "replication to peers",
        "disk baseline (save)",
    ]
    assert [t.get_text() for t in recovery.get_legend().get_texts()] == [
        "from local CPU memory",
        "from a peer's CPU memory",
        "from persistent storage",
        "disk baseline (load)",
    ]
    snapshot = save.get_lines()[0]
    expected = measurements[measurements["event"] == "snapshot"].groupby("bytes")["duration_s"].mean()
    assert list(snapshot.get_ydata()) == pytest.approx(list(expected))


def test_measurements_without_recovery_draw_only_saving(measurements: pd.DataFrame) -> None:
    saving_only = measurements[measurements["event"].isin(["snapshot", "disk_save"])]
    save, recovery = plot_measurements(saving_only).axes
    assert len(save.get_lines()) == 2
    assert recovery.get_lines() == [] and recovery.get_legend() is None


def test_measurements_missing_columns() -> None:
    with pytest.raises(UserError, match="measurements columns = 'duration_s'"):
        plot_measurements(pd.DataFrame({"event": ["snapshot"], "bytes": [1.0], "source": ["local"]}))
