"""The soak command runs: a few seeded schedules, each bit-exact, with nothing left behind."""

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak_realrun.py"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_schedule_is_bit_exact_and_leaves_nothing_behind(tmp_path):
    # One seeded schedule on two machines keeps CI cheap; tests/realrun/test_launcher.py covers each
    # failure kind on its own, and the full soak is `python benchmarks/soak_realrun.py --schedules 200`.
    command = [sys.executable, str(SOAK), "--schedules", "1", "--seed", "3", "--max-machines", "2"]
    done = subprocess.run([*command, "--out", str(tmp_path / "soak")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = dict(line.split("  ", 1) for line in done.stdout.splitlines() if "  " in line and line[0] != " ")
    assert lines["schedules"].strip() == "1"
    assert lines["bit-exact with reference"].strip() == "1/1"
    assert lines["hangs (time limit)"].strip() == "0" and lines["runs with leftovers"].strip() == "0"


def _soak_module():
    spec = importlib.util.spec_from_file_location("soak_realrun", SOAK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def saved_handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_soak_stops_on_a_signal_even_when_started_with_sigint_ignored(sig, saved_handlers):
    # A background job of a shell starts with SIGINT ignored: the soak must still hear Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _soak_module().stop_on_signals()
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(sig)


def test_every_memory_damage_the_soak_draws_is_a_valid_schedule():
    from gemini_ft.realrun.faults import parse_failures

    soak = _soak_module()
    rng = __import__("numpy").random.default_rng(0)
    hows = set()
    for _ in range(200):
        topo = soak.draw_topology(rng, 4, ("fsdp", "hsdp", "ddp"))
        specs = soak.draw_failures(rng, "mem-damage", topo)
        failure, damage = parse_failures(specs, topo["machines"], topo["procs"], soak.STEPS)
        assert damage.kind == "mem" and failure.step == damage.step
        hows.add(damage.how)
    assert hows == {"flip", "random", "truncate", "delete", "manifest"}


def test_an_interrupted_soak_prints_its_table_and_exits_130(tmp_path, monkeypatch, capsys, saved_handlers):
    soak = _soak_module()

    def terminated_mid_run(*args):
        signal.raise_signal(signal.SIGTERM)  # what `kill PID` does while a run is in flight

    monkeypatch.setattr(soak, "run_schedule", terminated_mid_run)
    assert soak.main(["--schedules", "3", "--out", str(tmp_path / "soak")]) == 130
    printed = capsys.readouterr().out
    assert "interrupted during schedule 0" in printed
    rows = dict(line.split("  ", 1) for line in printed.splitlines() if "  " in line)
    assert rows["schedules"].strip() == "0" and rows["bit-exact with reference"].strip() == "0/0"
