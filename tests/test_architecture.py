"""The layers hold: import-linter's contracts pass, fail when a layer is crossed (between packages, and
inside realrun between the engine, the worker and the testbed), and the simulator, scenarios,
calibration and analysis import (every module of them) without torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gemini_ft", "analysis", "calibration", "realrun", "sim", "scenarios")
lint_imports = shutil.which("lint-imports")
needs_linter = pytest.mark.skipif(lint_imports is None, reason="import-linter is not installed")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [lint_imports, "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
    )  # fmt: skip


@needs_linter
def test_the_contracts_are_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@needs_linter
@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("sim/engine.py", "import gemini_ft.cli", "gemini_ft > analysis"),  # the library imports the CLI
        ("scenarios/loader.py", "import sim.engine", "gemini_ft > analysis"),  # a lower layer imports up
        ("analysis/tables.py", "import calibration.fit", "gemini_ft > analysis"),  # two siblings
        ("sim/results.py", "import torch", "without torch"),
        ("realrun/engine/shard.py", "import realrun.worker.train", "checkpoint engine imports no"),
        ("realrun/engine/recovery.py", "import realrun.config", "checkpoint engine imports no"),
        ("realrun/testbed/launcher.py", "import realrun.worker.model", "worker and the testbed"),
    ],
)
def test_a_crossed_layer_breaks_a_contract(tmp_path, module, line, broken):
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / "pyproject.toml", tree)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__", "*.toml")
        )
    with (tree / module).open("a") as handle:
        handle.write(f"\n{line}  # noqa\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert any(broken in text and "BROKEN" in text for text in result.stdout.splitlines()), result.stdout


def test_the_simulator_scenarios_calibration_and_analysis_import_without_torch():
    # A finder first on the meta path makes any `import torch` raise at once, wherever it hides.
    code = (
        "import sys, pkgutil, importlib, importlib.abc\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch imported by ' + repr(name))\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "for name in ('scenarios', 'sim', 'calibration', 'analysis'):\n"
        "    package = importlib.import_module(name)\n"
        "    for info in pkgutil.walk_packages(package.__path__, name + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
