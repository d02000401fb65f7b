"""`gemini-ft report`: run the sweeps the paper's figures need, draw every figure, write index.html.

The report runs two sweeps of the `gpt2-100b-p4d` preset (policy × failure rate at N = 16, and policy ×
machines at 1.5%/machine/day), each under Fig. 15's two accountings (the simulator's, and the paper's:
`gemini_ft.sim.policies.paper_fig15_scenario`), computes recovery probabilities and checkpoint times from closed
forms, and writes each figure as PNG, PDF and CSV, plus a table of the paper's findings beside ours.
`quick` shrinks seeds, points and durations so the whole report runs in about a minute.
index.html records what built it: the package version and the command (both passed in by the caller,
so analysis never imports the CLI package) and the date it was built.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pandas as pd

from gemini_ft.analysis.catalog import (
    FigureSpec,
    ckpt_time_figure,
    effective_ratio_accountings_figure,
    interleave_figure,
    measurements_figure,
    recovery_probability_figure,
    wasted_time_figure,
)
from gemini_ft.analysis.findings import (
    Finding,
    findings_frame,
    interleave_finding,
    lost_progress_finding,
    placement_finding,
    scale_finding,
    wasted_time_finding,
)
from gemini_ft.analysis.interleave_figures import interleave_table
from gemini_ft.analysis.results_io import load_result_file
from gemini_ft.analysis.style import PAGE_WIDTH_PX
from gemini_ft.analysis.tables import ckpt_time_table, fig15_cost_table
from gemini_ft.common.errors import UserError, about
from gemini_ft.scenarios.loader import load_scenario, validate
from gemini_ft.scenarios.schema import POLICIES, Scenario

PRESET = "gpt2-100b-p4d"
INTERLEAVE_PRESET = "gpt2-40b-p3dn"
SCALE_MACHINES = 1000
SCALE_RATE = 0.015


@dataclass(frozen=True)
class ReportPlan:
    """How much to run: seeds and simulated days per sweep point, and the grid of each figure."""

    seeds: int
    duration_days: float
    rates: tuple[float, ...]
    machines: tuple[int, ...]
    probability_machines: tuple[int, ...]
    probability_replicas: tuple[int, ...]
    probability_failures: tuple[int, ...]
    ckpt_machines: tuple[int, ...]
    ckpt_bandwidths_gbps: tuple[float, ...]


FULL = ReportPlan(
    seeds=10,
    duration_days=30.0,
    rates=(0.0025, 0.005, 0.01, 0.015, 0.03, 0.05),
    machines=(16, 64, 256, SCALE_MACHINES, 2048),
    probability_machines=(8, 16, 32, 64, 128, 256, 512),
    probability_replicas=(2, 3, 4),
    probability_failures=(2, 3, 4),
    ckpt_machines=(16, 32, 64, 128, 256),
    ckpt_bandwidths_gbps=(25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0),
)
QUICK = ReportPlan(
    seeds=2,
    duration_days=7.0,
    rates=(0.005, 0.015, 0.05),
    machines=(16, 256, SCALE_MACHINES),
    probability_machines=(8, 16, 32, 64),
    probability_replicas=(2, 3),
    probability_failures=(2, 3),
    ckpt_machines=(16, 64, 256),
    ckpt_bandwidths_gbps=(100.0, 400.0, 1600.0),
)


@dataclass(frozen=True)
class Report:
    index: Path
    files: list[Path]
    findings: list[Finding]


def build_report(
    out_dir: Path,
    plan: ReportPlan,
    *,
    workers: int = 1,
    progress: bool = True,
    measurements: Path | None = None,
    version: str | None = None,
    command: str | None = None,
    now: datetime | None = None,
) -> Report:
    """Run the sweeps of `plan`, write every figure (PNG, PDF, CSV), findings.csv and index.html.

    `version` and `command` are recorded in index.html (the version defaults to the installed
    distribution's); `now` is the build time it records (default: the current time, UTC).
    """
    if SCALE_RATE not in plan.rates:
        raise UserError("plan.rates", plan.rates, f"must include {SCALE_RATE} (the paper's failure rate)")
    with about("measurements", instead_of="RESULTS"):
        measured = load_result_file(measurements) if measurements is not None else None
    if measured is not None and measured.kind != "measurements":
        raise UserError("measurements", str(measurements), "must be a real-runner measurements file")
    out_dir.mkdir(parents=True, exist_ok=True)
    from gemini_ft.sim.policies import paper_fig15_scenario

    base = load_scenario(PRESET)
    grids: dict[str, dict[str, list[object]]] = {
        "policy-rate": {
            "checkpoint.policy": list(POLICIES),
            "failures.rate_per_machine_per_day": list(plan.rates),
        },
        "policy-machines": {
            "checkpoint.policy": list(POLICIES),
            "cluster.machines": list(plan.machines),
            "failures.rate_per_machine_per_day": [SCALE_RATE],
        },
    }
    # Fig. 15's two accountings: the preset as modelled, and the paper's (16-instance costs at every N,
    # no failure during a recovery). Each sweep has its own directory, so each resumes on its own.
    accountings = {"simulator": ("", base), "paper": ("-paper", paper_fig15_scenario(base))}
    runs = {
        (grid, accounting): _sweep(scenario, grid + suffix, sweep, plan, out_dir, workers, progress)
        for accounting, (suffix, scenario) in accountings.items()
        for grid, sweep in grids.items()
    }
    by_rate = runs["policy-rate", "simulator"]
    rate_accountings = {name: runs["policy-rate", name] for name in accountings}
    machine_accountings = {name: runs["policy-machines", name] for name in accountings}
    probability = recovery_probability_data(
        plan.probability_machines, plan.probability_replicas, plan.probability_failures
    )
    ckpt = ckpt_time_table(base, plan.ckpt_machines, plan.ckpt_bandwidths_gbps)
    schemes = interleave_data(INTERLEAVE_PRESET)
    n16 = by_rate[by_rate["machines"] == 16] if "machines" in by_rate.columns else by_rate
    costs = fig15_cost_table(base, plan.machines)
    specs = [
        recovery_probability_figure(probability),
        wasted_time_figure(n16[(n16["failure_rate_per_machine_per_day"] - SCALE_RATE).abs() < 1e-12]),
        ckpt_time_figure(ckpt),
        effective_ratio_accountings_figure(rate_accountings, "failure_rate_per_machine_per_day", costs),
        effective_ratio_accountings_figure(machine_accountings, "machines", costs),
        interleave_figure(schemes, INTERLEAVE_PRESET),
    ]
    if measured is not None:
        specs.append(measurements_figure(measured.data))
    files = []
    for spec in specs:
        files.extend(spec.write(out_dir))
    findings = [
        placement_finding(probability),
        wasted_time_finding(n16, rate=SCALE_RATE),
        lost_progress_finding(base, n16, rate=SCALE_RATE),
        *(
            scale_finding(summary, machines=SCALE_MACHINES, rate=SCALE_RATE, accounting=name)
            for name, summary in machine_accountings.items()
        ),
        interleave_finding(schemes, INTERLEAVE_PRESET),
    ]
    findings_csv = out_dir / "findings.csv"
    findings_frame(findings).to_csv(findings_csv, index=False)
    index = out_dir / "index.html"
    built = now if now is not None else datetime.now(UTC)
    index.write_text(render_index(specs, findings, plan, version=version, command=command, built=built))
    return Report(index, [*files, findings_csv, index], findings)


def recovery_probability_data(
    machines: Sequence[int], replicas: Sequence[int], failures: Sequence[int]
) -> pd.DataFrame:
    """Exact recovery probabilities for group (mixed where m ∤ N) and ring placement."""
    from gemini_ft.placement.probability import probability_table

    rows: list[dict[str, object]] = []
    for n in machines:
        for m in replicas:
            ks = [k for k in failures if k <= n]
            if m > n or not ks:
                continue
            strategies = ["group" if n % m == 0 else "mixed", "ring"]
            rows.extend(probability_table(strategies, n, m, ks, method="exact", include_bound=False))
    return pd.DataFrame(rows)


def interleave_data(preset: str) -> pd.DataFrame:
    """Every checkpoint-traffic scheme on one iteration of `preset` (paper Fig. 16)."""
    from gemini_ft.sim.interleave import evaluate_schemes

    return interleave_table([result.summary() for result in evaluate_schemes(load_scenario(preset))])


def _sweep(
    base: Scenario,
    name: str,
    sweep: dict[str, list[object]],
    plan: ReportPlan,
    out_dir: Path,
    workers: int,
    progress: bool,
) -> pd.DataFrame:
    from gemini_ft.sim.sweep import run_sweep

    data = base.model_dump(mode="json", exclude_none=True)
    data.update(
        name=f"{PRESET}-{name}",
        sweep=sweep,
        run={"duration_days": plan.duration_days, "seeds": plan.seeds, "base_seed": 0},
    )
    scenario = validate(data)
    results = run_sweep(scenario, out_dir=out_dir / "sweeps" / name, workers=workers, progress=progress)
    return results.summary


def installed_version() -> str:
    """The installed gemini-ft distribution's version, read from its metadata (not by importing it)."""
    try:
        return metadata.version("gemini-ft")
    except metadata.PackageNotFoundError:
        return "unknown"


def render_index(
    specs: Sequence[FigureSpec],
    findings: Sequence[Finding],
    plan: ReportPlan,
    *,
    version: str | None = None,
    command: str | None = None,
    built: datetime | None = None,
) -> str:
    """A self-contained page: what built it, the findings table, then each figure with its caption
    and numbers."""
    e = html.escape
    version = version or installed_version()
    when = built.strftime("%Y-%m-%d %H:%M %Z").strip() if built is not None else "not recorded"
    provenance = (
        f"<p class='provenance'>Built by gemini-ft <span id='version'>{e(version)}</span> on "
        f"<time id='built' datetime='{e(built.isoformat() if built else '')}'>{e(when)}</time> with "
        f"<code id='command'>{e(command or 'build_report() from Python (no command given)')}</code></p>"
    )
    rows = "".join(
        f"<tr><td>{e(f.claim)}</td><td>{e(f.paper)}</td><td>{e(f.obtained)}</td>"
        f"<td class='{'yes' if f.holds else 'no'}'>{'yes' if f.holds else 'no'}</td><td>{e(f.test)}</td></tr>"
        for f in findings
    )
    sections = "".join(
        f"<section id='{s.stem}'><h2>{e(s.title)}</h2>"
        f"<img src='{s.stem}.png' alt='{e(s.title)}'><p>{e(s.caption)}</p>"
        f"<p><a href='{s.stem}.pdf'>PDF</a> · <a href='{s.stem}.csv'>CSV</a></p>"
        f"<details><summary>Numbers behind the figure ({len(s.table)} rows)</summary>"
        f"{s.table.to_html(index=False, float_format=lambda v: f'{v:.4g}', na_rep='')}</details></section>"
        for s in specs
    )
    setup = (
        f"Preset {PRESET}; {plan.seeds} seeds × {plan.duration_days:g} simulated days per sweep point; "
        f"failure rates {', '.join(f'{r:g}' for r in plan.rates)} per machine per day; "
        f"machines {', '.join(map(str, plan.machines))}. Each sweep runs twice, under the simulator's "
        "accounting and under the paper's Fig. 15 accounting (16-instance costs at every N, no failure "
        "during a recovery; sweeps/*-paper). Sweep results are in sweeps/."
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>gemini-ft report</title>
<meta name="generator" content="gemini-ft {e(version)}">
<style>
body {{ font-family: sans-serif; max-width: {PAGE_WIDTH_PX}px; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }} td, th {{ border: 1px solid #ccc; padding: 0.25em 0.5em; }}
td.yes {{ color: #1a7f37; font-weight: bold; }} td.no {{ color: #b42318; font-weight: bold; }}
img {{ max-width: 100%; }} section {{ margin-top: 2.5em; }} .provenance {{ color: #555; }}
</style></head><body>
<h1>gemini-ft: the Gemini paper's figures, reproduced</h1>
{provenance}
<p>{e(setup)}</p>
<h2>Paper findings vs this reproduction</h2>
<table><tr><th>claim</th><th>paper</th><th>obtained</th><th>holds</th><th>test</th></tr>{rows}</table>
{sections}
</body></html>
"""
