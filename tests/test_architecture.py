"""The layers hold: import-linter's contracts pass, and fail when a layer is crossed (between packages,
between the simulator and the real runner, and inside realrun between the engine, the worker and the
testbed); everything but the real runner imports (every module of it) without torch; and one import
root is all the distribution installs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
lint_imports = shutil.which("lint-imports")
needs_linter = pytest.mark.skipif(lint_imports is None, reason="import-linter is not installed")
LAYERS = "cli > api > analysis | calibration > sim | realrun > scenarios > placement > common"
NO_TORCH = "Everything but the real runner runs without torch"
ENGINE = "The checkpoint engine imports no worker, testbed or run config"
WORKER = "The worker and the testbed are independent"


def _lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [lint_imports, "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree / "src")},
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
        ("sim/engine.py", "import gemini_ft.cli", LAYERS),  # the library imports the CLI
        ("analysis/tables.py", "import gemini_ft.api", LAYERS),  # the library imports the front door
        ("scenarios/loader.py", "import gemini_ft.sim.engine", LAYERS),  # a lower layer imports up
        ("common/results_io.py", "import gemini_ft.scenarios.schema", LAYERS),  # common knows no scenario
        ("placement/layout.py", "import gemini_ft.scenarios.schema", LAYERS),
        ("analysis/tables.py", "import gemini_ft.calibration.fit", LAYERS),  # two siblings
        ("sim/engine.py", "import gemini_ft.realrun.faults", LAYERS),  # the two witnesses are independent
        ("realrun/testbed/launcher.py", "import gemini_ft.sim.costs", LAYERS),
        ("sim/results.py", "import torch", NO_TORCH),
        ("placement/layout.py", "import torch", NO_TORCH),
        ("realrun/engine/shard.py", "import gemini_ft.realrun.worker.train", ENGINE),
        ("realrun/engine/recovery.py", "import gemini_ft.realrun.config", ENGINE),
        ("realrun/testbed/launcher.py", "import gemini_ft.realrun.worker.model", WORKER),
    ],
)
def test_a_crossed_layer_breaks_a_contract(tmp_path, module, line, broken):
    tree = tmp_path / "tree"
    (tree / "src").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", tree)
    shutil.copytree(
        SRC / "gemini_ft", tree / "src" / "gemini_ft", ignore=shutil.ignore_patterns("__pycache__")
    )
    with (tree / "src" / "gemini_ft" / module).open("a") as handle:
        handle.write(f"\n{line}  # noqa\n")
    result = _lint(tree)
    assert result.returncode != 0
    # The report wraps long contract names over lines: compare with the whitespace folded.
    assert f"{broken} BROKEN" in " ".join(result.stdout.split()), result.stdout


def test_everything_but_the_real_runner_imports_without_torch():
    # A finder first on the meta path makes any `import torch` raise at once, wherever it hides.
    code = (
        "import sys, pkgutil, importlib, importlib.abc\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch imported by ' + repr(name))\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "for name in ('common', 'scenarios', 'placement', 'sim', 'calibration', 'analysis'):\n"
        "    package = importlib.import_module('gemini_ft.' + name)\n"
        "    for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "importlib.import_module('gemini_ft.api')\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_the_placement_names_import_without_numpy():
    # The schema and every command's help read the registry; numpy is for building placements.
    code = (
        "import sys\n"
        "from gemini_ft.placement.registry import PLACEMENTS\n"
        "assert 'numpy' not in sys.modules, sorted(m for m in sys.modules if m.startswith('numpy'))\n"
        "print(','.join(PLACEMENTS))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "group" in result.stdout, result.stderr
