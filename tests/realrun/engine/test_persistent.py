"""A persistent checkpoint counts only with its manifest, written once every rank's part of one round is
finished, and only while every byte still matches it."""

import json
import os
import threading

import pytest

from gemini_ft.realrun.engine.manifest import Layout
from gemini_ft.realrun.engine.persistent import (
    MANIFEST,
    commit_if_complete,
    committed_steps,
    finish_part,
    part_dir,
    persistent_dir,
    start_part,
    uncommit,
    verify,
)
from gemini_ft.realrun.faults import damage_newest

FSDP = [Layout("fsdp", (2,), ("shard",), ("Shard(dim=0)",), (r,), "float32") for r in range(2)]


def _part(step_dir, rank, token="round1", payload=b"x" * 5000):
    """Rank's part shaped like a DCP save: `.metadata` plus one data file, then its part manifest."""
    directory = start_part(step_dir, rank)
    (directory / ".metadata").write_bytes(b"\x80\x04metadata" * 10)
    (directory / "__0_0.distcp").write_bytes(payload + bytes([rank]))
    finish_part(step_dir, rank, token, FSDP[rank])


def _checkpoint(run_dir, step, token="round1"):
    directory = persistent_dir(run_dir, step)
    for rank in (0, 1):
        _part(directory, rank, token)
    assert commit_if_complete(directory, step, 2, token)
    return directory


def test_a_step_commits_once_every_part_of_one_round_is_there(tmp_path):
    directory = persistent_dir(tmp_path, 3)
    _part(directory, 1)
    assert not commit_if_complete(directory, 3, 2, "round1") and committed_steps(tmp_path) == []
    _part(directory, 0, token="round0")  # left by an earlier round (before a rollback): not this one's
    assert not commit_if_complete(directory, 3, 2, "round1")
    _part(directory, 0)
    assert commit_if_complete(directory, 3, 2, "round1") and committed_steps(tmp_path) == [3]
    assert verify(directory, 3, 2) is None
    assert verify(directory, 6) == "manifest is of step 3"
    assert verify(directory, 3, 4) == "manifest is of 2 ranks, this job has 4"
    manifest = json.loads((directory / MANIFEST).read_text())
    assert {f["path"] for f in manifest["files"]} == {
        "rank00000/.metadata", "rank00000/__0_0.distcp", "rank00001/.metadata", "rank00001/__0_0.distcp",
    }  # fmt: skip
    assert [Layout.from_data(layout) for layout in manifest["layouts"]] == FSDP


def test_a_new_part_withdraws_the_commit_at_once(tmp_path):
    directory = _checkpoint(tmp_path, 3)
    start_part(directory, 1)  # rank 1 rewrites its part (a new round persists the same step)
    assert committed_steps(tmp_path) == [] and not (part_dir(directory, 1) / "part.json").exists()


def test_parts_finished_at_once_by_many_writers_commit_exactly_once(tmp_path):
    directory = persistent_dir(tmp_path, 4)
    for rank in range(8):
        start_part(directory, rank)
        (part_dir(directory, rank) / ".metadata").write_bytes(b"m")
    results = []

    def finish(rank):
        finish_part(directory, rank, "t", Layout())
        results.append(commit_if_complete(directory, 4, 8, "t"))

    threads = [threading.Thread(target=finish, args=(rank,)) for rank in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) >= 1 and verify(directory, 4, 8) is None  # whoever came last committed


def test_each_rank_verifies_its_own_part_and_its_layout(tmp_path):
    directory = _checkpoint(tmp_path, 3)
    (part_dir(directory, 1) / "__0_0.distcp").write_bytes(b"y" * 5001)  # rank 1's part damaged
    assert verify(directory, 3, 2, part=0, layout=FSDP[0]) is None  # rank 0 reads only its own
    assert verify(directory, 3, 2, part=1, layout=FSDP[1]) == "rank00001/__0_0.distcp fails its CRC-32C"
    hsdp = Layout("hsdp", (2, 1), ("replicate", "shard"), ("Replicate()", "Shard(dim=0)"), (0, 0), "float32")
    why = verify(directory, 3, 2, part=0, layout=hsdp)
    assert why.startswith("part 0 cannot be loaded here: it is a shard of fsdp on mesh [2]")


@pytest.mark.parametrize(
    "how, why",
    [
        ("flip", "__0_0.distcp fails its CRC-32C"),
        ("truncate", "__0_0.distcp has 5000 bytes, the manifest says 5001"),
        ("metadata", ".metadata has 50 bytes, the manifest says 100"),
        ("missing", "__0_0.distcp is missing"),
    ],
)
def test_each_kind_of_damage_is_refused(tmp_path, how, why):
    _checkpoint(tmp_path, 3)
    directory = _checkpoint(tmp_path, 6)
    assert directory in damage_newest(tmp_path, how).parents
    assert verify(directory, 6).endswith(why)
    assert verify(persistent_dir(tmp_path, 3), 3) is None  # the older one is untouched


def test_uncommitted_and_forged_manifests(tmp_path):
    directory = _checkpoint(tmp_path, 3)
    uncommit(directory)
    assert committed_steps(tmp_path) == [] and verify(directory).startswith("no manifest")
    base = {
        "format": 2,
        "step": 3,
        "world": 1,
        "token": "t",
        "checksum": "crc32c",
        "layouts": [Layout().to_data()],
    }
    for manifest in (
        b"{not json",
        json.dumps({**base, "files": []}).encode(),  # no part's .metadata listed
        json.dumps({**base, "files": [{"path": "rank00000/.metadata", "bytes": 100, "crc32c": 0},
                                      {"path": "../../etc/passwd", "bytes": 1, "crc32c": 0}]}).encode(),
        json.dumps({**base, "layouts": [{"parallelism": "tp"}], "files": []}).encode(),
    ):  # fmt: skip
        (directory / MANIFEST).write_bytes(manifest)
        assert verify(directory) is not None


def test_a_symlinked_file_is_refused(tmp_path):
    directory = _checkpoint(tmp_path, 3)
    target = part_dir(directory, 0) / "__0_0.distcp"
    elsewhere = tmp_path / "elsewhere"
    os.replace(target, elsewhere)
    target.symlink_to(elsewhere)
    assert verify(directory, 3) == "rank00000/__0_0.distcp is not a regular file"


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,  # nested past the parser's stack: RecursionError
        '{"format": 2, "checksum": "crc32c", "step": ' + "9" * 100_000 + ', "files": []}',  # a huge integer
        '{"format": 2, "checksum": "crc32c", "step": 3, "files": ' + "[" * 50_000 + "]" * 50_000 + "}",
        "{}" + " " * (17 << 20),  # past the size bound: not even parsed
    ],
    ids=["nested", "huge-integer", "nested-files", "oversized"],
)
def test_a_manifest_no_job_could_write_is_a_reason_not_an_exception(tmp_path, text):
    directory = _checkpoint(tmp_path, 3)
    (directory / MANIFEST).write_text(text)
    why = verify(directory, 3)
    assert why is not None and ("malformed" in why or "larger than" in why or "unknown" in why)
