"""The benchmarks say what they do to the machine and what a surprising number means; the digest tool
sees a changed result."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str, script: str | None = None) -> ModuleType:
    # benchmarks/ is a folder of scripts, not a package: load one by path.
    path = BENCHMARKS / (script or f"bench_{name}.py")
    spec = importlib.util.spec_from_file_location(f"bench_{name}_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_bench_sim_explains_a_zero_ratio() -> None:
    bench = _load("sim")
    # The 100,000-machine gpt2-100b-p4d run (seed 0): 41,798 failures in 30 days.
    summary = {
        "failures": 41798,
        "effective_ratio": 0.0,
        "duration_s": 2592000.0,
        "wasted_s": 2592000.0,
        "simultaneous_failures": 41795,
    }
    text = bench.explain_ratio(summary, 62.0)
    assert text.startswith(
        "effective ratio 0.000: 41,798 failures, one every 62.0 s on average (iteration 62 s)"
    )
    assert "41,795 landed while a recovery was under way" in text
    assert "failures arrive faster than a recovery" in text and "no progress survives" in text


def test_bench_sim_does_not_explain_away_a_healthy_ratio() -> None:
    bench = _load("sim")
    summary = {"failures": 40, "effective_ratio": 0.92, "duration_s": 2592000.0, "wasted_s": 2e5}
    text = bench.explain_ratio(summary, 62.0)
    assert text.startswith("effective ratio 0.920: 40 failures, one every 64,800.0 s")
    assert "no progress survives" not in text
    assert (
        bench.explain_ratio({**summary, "failures": 0}, 62.0)
        == "effective ratio 0.920: no failure in the run"
    )


def test_bench_sim_explains_a_simulated_run_as_main_passes_it() -> None:
    # main() hands over a RunSummary's row (it once passed the RunSummary itself, which broke the run).
    from gemini_ft.scenarios.loader import load_scenario
    from gemini_ft.sim.engine import simulate

    bench = _load("sim")
    summary = simulate(load_scenario("gpt2-100b-p4d", {"cluster.machines": 64}), 0).summary
    text = bench.explain_ratio(summary.row(), 62.0)
    assert text.startswith(f"effective ratio {summary.effective_ratio:.3f}: ")


@pytest.fixture
def bench_realrun() -> ModuleType:
    pytest.importorskip("torch")
    return _load("realrun")


def test_bench_realrun_skips_drop_caches_when_not_root(
    bench_realrun: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proc = tmp_path / "drop_caches"
    proc.write_text("0\n")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "shard.bin").write_bytes(b"x" * 4096)
    monkeypatch.setattr(bench_realrun.os, "geteuid", lambda: 1000)
    assert bench_realrun._drop_caches(tmp_path / "ckpt", proc) in {"fadvise", "not dropped"}
    out = capsys.readouterr().out
    assert out.startswith(f"page cache: not root, so not writing {proc}; evicting only the checkpoint files")
    assert proc.read_text() == "0\n"  # untouched


def test_bench_realrun_says_it_drops_the_page_cache_as_root(
    bench_realrun: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proc = tmp_path / "drop_caches"
    monkeypatch.setattr(bench_realrun.os, "geteuid", lambda: 0)
    monkeypatch.setattr(bench_realrun.os, "sync", lambda: None)
    assert bench_realrun._drop_caches(tmp_path, proc) == "drop_caches"
    assert proc.read_text() == "3\n"
    out = capsys.readouterr().out
    assert f"page cache: writing 3 to {proc} (drops this machine's whole page cache)" in out
    assert "cold load reads from disk, not from memory" in out


def test_sim_digest_is_stable_and_sees_a_changed_result() -> None:
    """The digest an engine change is checked with: the same runs hash alike, and a different result (one
    more failure per machine per day) does not."""
    digest = _load("digest", "sim_digest.py").digest
    same = digest("gpt2-100b-p4d", {}, seeds=1)
    assert same == digest("gpt2-100b-p4d", {}, seeds=1)
    assert same != digest("gpt2-100b-p4d", {"failures.rate_per_machine_per_day": 0.02}, seeds=1)
