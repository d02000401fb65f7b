"""The soak command runs: a few seeded schedules, each bit-exact, with nothing left behind."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak_realrun.py"


def test_two_schedules_are_bit_exact_and_leave_nothing_behind(tmp_path):
    # Schedules 0 and 1 are a software and a hardware failure; two machines keep it cheap.
    command = [sys.executable, str(SOAK), "--schedules", "2", "--seed", "3", "--max-machines", "2"]
    done = subprocess.run([*command, "--out", str(tmp_path / "soak")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = dict(line.split("  ", 1) for line in done.stdout.splitlines() if "  " in line and line[0] != " ")
    assert lines["schedules"].strip() == "2"
    assert lines["bit-exact with reference"].strip() == "2/2"
    assert lines["hangs (time limit)"].strip() == "0" and lines["runs with leftovers"].strip() == "0"
