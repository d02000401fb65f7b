"""A persistent checkpoint counts only with its manifest, and only while every byte still matches it."""

import json
import os

import pytest

from gemini_ft.realrun.engine.persistent import (
    MANIFEST,
    commit,
    committed_steps,
    persistent_dir,
    uncommit,
    verify,
)
from gemini_ft.realrun.faults import damage_newest


def _checkpoint(run_dir, step, payload=b"x" * 5000):
    """A directory shaped like a DCP save: `.metadata` plus one data file per rank."""
    directory = persistent_dir(run_dir, step)
    directory.mkdir(parents=True)
    (directory / ".metadata").write_bytes(b"\x80\x04metadata" * 10)
    for rank in (0, 1):
        (directory / f"__{rank}_0.distcp").write_bytes(payload + bytes([rank]))
    return directory


def test_a_committed_checkpoint_verifies(tmp_path):
    directory = _checkpoint(tmp_path, 3)
    assert committed_steps(tmp_path) == []  # files without a manifest were never committed
    manifest = commit(directory, 3)
    assert {f["path"] for f in manifest["files"]} == {".metadata", "__0_0.distcp", "__1_0.distcp"}
    assert committed_steps(tmp_path) == [3]
    assert verify(directory, 3) is None
    assert verify(directory, 6) == "manifest is of step 3"


@pytest.mark.parametrize(
    "how, why",
    [
        ("flip", "__1_0.distcp fails its CRC-32C"),
        ("truncate", "__1_0.distcp has 5000 bytes, the manifest says 5001"),
        ("metadata", ".metadata has 50 bytes, the manifest says 100"),
        ("missing", "__1_0.distcp is missing"),
    ],
)
def test_each_kind_of_damage_is_refused(tmp_path, how, why):
    commit(_checkpoint(tmp_path, 3), 3)
    directory = _checkpoint(tmp_path, 6)
    commit(directory, 6)
    assert damage_newest(tmp_path, how).parent == directory
    assert verify(directory, 6) == why
    assert verify(persistent_dir(tmp_path, 3), 3) is None  # the older one is untouched


def test_uncommitted_and_forged_manifests(tmp_path):
    directory = _checkpoint(tmp_path, 3)
    commit(directory, 3)
    uncommit(directory)
    assert committed_steps(tmp_path) == [] and verify(directory).startswith("no manifest")
    for manifest in (
        b"{not json",
        json.dumps({"format": 1, "step": 3, "checksum": "crc32c", "files": []}).encode(),
        json.dumps(
            {"format": 1, "step": 3, "checksum": "crc32c", "files": [{"path": "../../etc/passwd"}]}
        ).encode(),
    ):
        (directory / MANIFEST).write_bytes(manifest)
        assert verify(directory) is not None


def test_a_symlinked_file_is_refused(tmp_path):
    directory = _checkpoint(tmp_path, 3)
    commit(directory, 3)
    elsewhere = tmp_path / "elsewhere"
    os.replace(directory / "__0_0.distcp", elsewhere)
    (directory / "__0_0.distcp").symlink_to(elsewhere)
    assert verify(directory, 3) == "__0_0.distcp is not a regular file"


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,  # nested past the parser's stack: RecursionError
        '{"format": 1, "checksum": "crc32c", "step": ' + "9" * 100_000 + ', "files": []}',  # a huge integer
        '{"format": 1, "checksum": "crc32c", "step": 3, "files": ' + "[" * 50_000 + "]" * 50_000 + "}",
        "{}" + " " * (17 << 20),  # past the size bound: not even parsed
    ],
    ids=["nested", "huge-integer", "nested-files", "oversized"],
)
def test_a_manifest_no_job_could_write_is_a_reason_not_an_exception(tmp_path, text):
    directory = _checkpoint(tmp_path, 3)
    commit(directory, 3)
    (directory / MANIFEST).write_text(text)
    why = verify(directory, 3)
    assert why is not None and ("malformed" in why or "larger than" in why or "unknown" in why)
