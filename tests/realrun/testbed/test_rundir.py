"""`out` becomes a run directory only when it is the job's own; it is then private and marked."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

from gemini_ft.common.errors import UserError
from gemini_ft.realrun.testbed.rundir import MARKER, check_out, prepare


def _refused(out: Path, force: bool = False) -> str:
    with pytest.raises(UserError) as caught:
        check_out(out, force)
    assert caught.value.field == "out"
    return caught.value.allowed


def test_a_new_or_empty_private_directory_is_accepted(tmp_path):
    assert check_out(tmp_path / "new" / "run", False) == (tmp_path / "new" / "run").resolve()
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    assert check_out(empty, False) == empty.resolve()


def test_prepare_makes_it_private_and_marks_it(tmp_path):
    out = tmp_path / "run"
    out.mkdir(mode=0o755)
    (out / MARKER).write_text("{}")
    (out / "persistent").mkdir()
    (out / "persistent" / "stale").write_text("old")
    prepare(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / MARKER).stat().st_mode) == 0o600
    assert not (out / "persistent").exists()  # a forced rerun starts clean


def test_foreign_directories_are_refused(tmp_path):
    writable = tmp_path / "writable"
    writable.mkdir()
    writable.chmod(0o777)
    assert "group- or world-writable" in _refused(writable)
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o700)
    (planted / "persistent").mkdir()
    assert "holds no previous gemini-ft realrun" in _refused(planted, force=True)
    previous = tmp_path / "previous"
    previous.mkdir(mode=0o700)
    (previous / MARKER).write_text("{}")
    assert "add --force" in _refused(previous)
    assert check_out(previous, True) == previous.resolve()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
def test_another_users_directory_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    assert "belongs to another user" in _refused(theirs)


def test_paths_that_cannot_hold_a_run(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert _refused(a_file) == "exists and is not a directory"
    assert "is a file, not a directory" in _refused(a_file / "below")
    assert "virtual file system" in _refused(Path("/proc/self/run"))
    assert "longer than 255 bytes" in _refused(tmp_path / ("n" * 256))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a read-only file system")
def test_a_read_only_mount_is_refused(tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "none", str(mount)]).returncode:
        pytest.skip("mount is not permitted here")
    try:
        assert _refused(mount / "run") == "is on a read-only file system"
    finally:
        subprocess.run(["umount", str(mount)], check=True)
