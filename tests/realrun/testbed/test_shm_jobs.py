"""Shared-memory job directories: exclusive creation, refusal of foreign ones, sweeping of dead jobs."""

import json
import os
import subprocess
import sys

import pytest

from gemini_ft.realrun.engine.shm_store import ShmDirRefused, ShmStore, check_private
from gemini_ft.realrun.testbed.shm_jobs import (
    OWNER_FILE,
    cleanup_stale_shm,
    create_job_dir,
    new_job_id,
)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_job_directory_is_created_exclusively_and_signed(tmp_path):
    job = new_job_id()
    assert len(job.split("-")[1]) == 32  # 128 random bits: not guessable ahead of the job
    path = create_job_dir(job, tmp_path)
    assert oct(path.stat().st_mode & 0o777) == "0o700"
    assert json.loads((path / OWNER_FILE).read_text())["pid"] == os.getpid()
    with pytest.raises(FileExistsError):  # someone made it first: never adopt it
        create_job_dir(job, tmp_path)


def test_a_given_directory_must_be_ours_and_closed(tmp_path):
    shared = tmp_path / "gemini-ft-1234"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(ShmDirRefused, match="mode 755"):
        ShmStore(shared, 0)
    shared.chmod(0o700)
    ShmStore(shared, 0).close()  # ours and 0700: fine
    link = tmp_path / "gemini-ft-link"
    link.symlink_to(shared)
    with pytest.raises(ShmDirRefused, match="not a directory"):
        check_private(link)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
def test_another_users_directory_is_refused(tmp_path):
    theirs = tmp_path / "gemini-ft-theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(ShmDirRefused, match="belongs to uid 65534"):
        ShmStore(theirs, 0)


def test_cleanup_removes_only_jobs_whose_launcher_is_gone(tmp_path):
    dead = create_job_dir(new_job_id(), tmp_path)
    (dead / OWNER_FILE).write_text(json.dumps({"pid": _dead_pid(), "start": 1}))
    (dead / "machine0").mkdir()
    alive = create_job_dir(new_job_id(), tmp_path)  # signed by this (live) process
    old_style = tmp_path / f"gemini-ft-{_dead_pid()}-abc123"  # unsigned, the launcher's naming scheme
    old_style.mkdir(mode=0o700)
    cluster = tmp_path / "gemini-ft-424242"  # a cluster recipe's name: may be a live job's, keep it
    cluster.mkdir(mode=0o700)
    assert sorted(cleanup_stale_shm(tmp_path)) == sorted([dead, old_style])
    assert alive.exists() and cluster.exists()
