"""The soak command runs: a few seeded schedules, each bit-exact, with nothing left behind."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak_realrun.py"


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
