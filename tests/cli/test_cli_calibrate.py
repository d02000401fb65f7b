"""`gemini-ft calibrate` and `gemini-ft validate` end to end on synthetic files, and their one-line errors."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic_measurements import synthetic_run

from gemini_ft.cli import main
from gemini_ft.scenarios.loader import load_scenario


def test_calibrate_then_validate(
    sized_runs: list[Path], tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "calibrated.toml"
    assert main(["calibrate", *map(str, sized_runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cluster.nic_bandwidth_gbps" in printed and "95% CI" in printed
    assert "checkpoint.transfer_latency_s" in printed and "checkpoint.local_retrieval_latency_s" in printed
    calibrated = load_scenario(out)
    assert calibrated.cluster.gpus_per_machine == 2
    held_out = synthetic_run(tmp_path / "held" / "m.parquet", rng, shard_bytes=2 * 2**20)
    report = tmp_path / "report"
    assert main(["validate", str(out), str(held_out), "--out", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "recovery total local" in printed and "rel. error" in printed
    # The fixed costs and bandwidths behind the predictions are printed with the table: rounds at the
    # fitted replication bandwidth, fetches at the base NIC's (these runs have no peer fetch).
    latency, rounds = calibrated.checkpoint.transfer_latency_s, calibrated.checkpoint.replication_gbps
    assert rounds is not None and calibrated.cluster.nic_bandwidth_gbps == 400.0
    assert f"rounds {latency:.4g} s + bytes / {rounds:.4g} Gbps (checkpoint.replication_gbps)" in printed
    assert f"peer fetches {latency:.4g} s + bytes / 400 Gbps (NIC)" in printed
    assert f"local {calibrated.checkpoint.local_retrieval_latency_s:.4g} s + bytes" in printed
    table = pd.read_csv(report / "validation.csv")
    assert set(table.quantity) >= {"in-memory checkpoint", "retrieval local", "recovery total local"}
    assert (report / "parity.png").stat().st_size > 0 and (report / "parity.pdf").stat().st_size > 0


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gemini-ft: error: ") and "\n" not in err
    return err


def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "o.toml")
    assert "no such file" in _error(["calibrate", str(tmp_path / "missing.parquet"), "--out", out], capsys)
    text = tmp_path / "notes.parquet"
    text.write_text("hello")
    assert "not a Parquet file" in _error(["calibrate", str(text), "--out", out], capsys)
    other = tmp_path / "other.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(other)
    assert "missing columns" in _error(["calibrate", str(other), "--out", out], capsys)
    run = synthetic_run(tmp_path / "r" / "m.parquet", rng, shard_bytes=2**20)
    frame = pd.read_parquet(run)
    bare = tmp_path / "bare.parquet"
    frame.to_parquet(bare)  # the same events without the run's configuration
    assert "gemini_ft.config" in _error(["calibrate", str(bare), "--out", out], capsys)
    assert "--base = 'nope'" in _error(["calibrate", str(run), "--base", "nope", "--out", out], capsys)
    assert not Path(out).exists()
