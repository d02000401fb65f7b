"""`gemini-ft report --quick` end to end in-process: every promised file, findings, and bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from gemini_ft import __version__
from gemini_ft.analysis.report import QUICK, build_report, render_index
from gemini_ft.cli import main

STEMS = (
    "fig09_recovery_probability",
    "fig10_wasted_time",
    "fig11_ckpt_time_reduction",
    "fig15a_effective_ratio_vs_failure_rate",
    "fig15b_effective_ratio_vs_machines",
    "fig16_iteration_time",
)


def test_report_quick_writes_every_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # One quick report (about 15 s here) serves every end-to-end check: files, findings, provenance
    # and captions.
    out = tmp_path / "report"
    argv = ["report", "--out", str(out), "--quick", "--no-progress"]
    monkeypatch.setattr(sys, "argv", ["gemini-ft", *argv])  # what the report records as its command
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 7 and f"report: {out / 'index.html'}" in printed
    for stem in STEMS:
        assert (out / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"
        assert len(pd.read_csv(out / f"{stem}.csv")) > 0
    index = (out / "index.html").read_text()
    # Provenance: the version and command that built it, and when (render_index's tests check the form).
    assert f"<span id='version'>{__version__}</span>" in index
    assert f"<code id='command'>gemini-ft report --out {out} --quick --no-progress</code>" in index
    assert "<time id='built' datetime='" in index
    # Each sweep figure's caption names the point it shows.
    seeds = f"Each mean is over {QUICK.seeds} seed(s) × {QUICK.duration_days:g} simulated days."
    captions = {
        "fig10_wasted_time": f"Shown at N = 16 and 0.015 failures per machine per day. {seeds}",
        "fig15a_effective_ratio_vs_failure_rate": f"Shown at N = 16. {seeds}",
        "fig15b_effective_ratio_vs_machines": f"Shown at 0.015 failures per machine per day. {seeds}",
    }
    for stem, point in captions.items():
        section = index[index.index(f"<section id='{stem}'>") :]
        caption = section[section.index("<p>") : section.index("</p>")]
        assert caption.endswith(point), stem
    for stem in STEMS:
        assert (
            f"src='{stem}.png'" in index and f"href='{stem}.pdf'" in index and f"href='{stem}.csv'" in index
        )
    findings = pd.read_csv(out / "findings.csv")
    # placement, wasted time, lost progress, scale under each accounting, interleaving.
    assert len(findings) == 6
    # Exact closed form: 93.3% for group at N = 16, m = 2, k = 2 (ring: 13/15).
    assert "group = 93.3%, ring = 86.7%" in findings.loc[0, "obtained"] and findings.loc[0, "holds"]
    assert index.count("<td class='yes'>") + index.count("<td class='no'>") == 6
    assert "1.5 × T_iter = 93 s" in findings.loc[2, "paper"]
    assert [c.split("(")[-1] for c in findings.loc[3:4, "claim"]] == [
        "simulator's accounting: per-failure costs scale with N, failures strike recoveries)",
        "paper's accounting: 16-instance costs at every N, no failure during a recovery)",
    ]
    assert "naive out of GPU memory" in findings.loc[5, "obtained"] and findings.loc[5, "holds"]
    for stem in ("fig15a_effective_ratio_vs_failure_rate", "fig15b_effective_ratio_vs_machines"):
        table = pd.read_csv(out / f"{stem}.csv")
        assert set(table["accounting"]) == {"simulator", "paper"}
        assert set(table["policy"]) == {"gemini", "highfreq", "strawman", "young-daly"}
    machines = pd.read_csv(out / "fig15b_effective_ratio_vs_machines.csv")
    assert set(machines["machines"]) == set(QUICK.machines)
    # The sweeps are kept and resumable: a second report into the same directory reuses them.
    for sweep in ("policy-rate", "policy-machines", "policy-rate-paper", "policy-machines-paper"):
        assert (out / "sweeps" / sweep / "summary.parquet").is_file()
    # The paper's accounting sweep holds the 16-instance costs and drops failures during recoveries.
    paper = (out / "sweeps" / "policy-machines-paper" / "scenario.toml").read_text()
    assert "costs_at_machines = 16" in paper and "strike_during_recovery = false" in paper


def test_report_rejects_a_measurements_file_that_is_not_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "m.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(bogus)
    assert main(["report", "--out", str(tmp_path / "r"), "--quick", "--measurements", str(bogus)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"gemini-ft: error: --measurements = '{bogus}': columns (a) are not")
        and err.count("\n") == 1
    )


def test_report_rejects_bad_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--out", str(tmp_path), "--workers", "0"]) == 2
    assert capsys.readouterr().err == "gemini-ft: error: --workers = 0: must be an integer ≥ 1\n"


def test_render_index_escapes_text() -> None:
    from gemini_ft.analysis.findings import Finding

    page = render_index([], [Finding("a < b", "p & q", "x", True, "t")], QUICK)
    assert "a &lt; b" in page and "p &amp; q" in page and "<td class='yes'>yes</td>" in page


def test_build_report_needs_the_paper_rate(tmp_path: Path) -> None:
    from dataclasses import replace

    from gemini_ft.common.errors import UserError

    with pytest.raises(UserError, match=r"plan\.rates"):
        build_report(tmp_path, replace(QUICK, rates=(0.01,)))


def test_render_index_records_version_command_and_date() -> None:
    from datetime import UTC, datetime

    built = datetime(2031, 4, 5, 6, 7, tzinfo=UTC)
    page = render_index(
        [], [], QUICK, version="9.8.7", command="gemini-ft report --out r --quick", built=built
    )
    assert "<span id='version'>9.8.7</span>" in page
    assert "<code id='command'>gemini-ft report --out r --quick</code>" in page
    assert "<time id='built' datetime='2031-04-05T06:07:00+00:00'>2031-04-05 06:07 UTC</time>" in page
    # Called without them (from Python), it still says which version built it and that no command was given.
    page = render_index([], [], QUICK)
    assert "no command given" in page and "<span id='version'></span>" not in page
