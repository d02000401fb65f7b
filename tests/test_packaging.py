"""One import root: the distribution installs `gemini_ft` and nothing else, and no folder of the user's
(`sim/`, `scenarios/`, `realrun/` in the working directory) can shadow a part of it, for the command or
for the workers torchrun starts."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OLD_ROOTS = ("sim", "scenarios", "realrun", "calibration", "analysis")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # A wheel is what `pip install .` installs; built from a copy (setuptools writes build/ into the
    # tree it builds) without network or a fresh build environment.
    tree = out / "tree"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
         str(tree)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (path,) = out.glob("gemini_ft-*.whl")
    return path


def test_the_wheel_installs_one_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["gemini_ft"]
    outside = [n for n in names if not n.startswith("gemini_ft/") and ".dist-info/" not in n]
    assert outside == []
    assert "gemini_ft/scenarios/presets/gpt2-100b-p4d.toml" in names  # the presets travel with the code
    assert "gemini_ft/realrun/worker/train.py" in names


def test_the_old_top_level_names_are_not_importable(tmp_path):
    code = "import importlib.util, sys; print([n for n in sys.argv[1:] if importlib.util.find_spec(n)])"
    result = subprocess.run(
        [sys.executable, "-c", code, *OLD_ROOTS], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_a_run_from_a_directory_with_folders_of_the_old_names(tmp_path):
    for name in OLD_ROOTS:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            f"raise ImportError('the user folder {name}/ was imported')\n"
        )
    command = shutil.which("gemini-ft")
    assert command is not None
    out = tmp_path / "out"
    result = subprocess.run(
        [command, "realrun", "--machines", "2", "--replicas", "2", "--steps", "3", "--device", "cpu",
         "--no-disk-baseline", "--no-progress", "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    logs = (
        "".join(p.read_text() for p in sorted((out / "logs").glob("*.log")))
        if (out / "logs").exists()
        else ""
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:] + logs[-3000:]
    assert "the user folder" not in logs
    assert (out / "measurements.parquet").is_file()
