"""The typed shard manifest: plain JSON both ways, and nothing but a consistent manifest comes in."""

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemini_ft.realrun.engine.checksums import chunk_checksums
from gemini_ft.realrun.engine.manifest import (
    DTYPE_BYTES,
    DTYPES,
    Entry,
    Layout,
    Manifest,
    ManifestError,
    build_layout,
)
from gemini_ft.realrun.engine.shard import torch_dtype


def _manifest(nbytes: int = 10, chunk: int = 4) -> Manifest:
    entries, total = build_layout([("param/w", "uint8", (nbytes,), nbytes)])
    return Manifest(3, 7, total, chunk, tuple(chunk_checksums(bytes(total), chunk)), tuple(entries))


def _json(manifest: Manifest) -> dict:
    return json.loads(manifest.to_json())


def test_the_json_is_plain_and_reads_back_equal():
    manifest = _manifest()
    data = _json(manifest)
    assert data["owner"] == 3 and data["step"] == 7 and data["checksum"]["algorithm"] == "crc32c"
    assert data["entries"] == [
        {"name": "param/w", "dtype": "uint8", "shape": [10], "global_shape": [10], "offset": 0, "nbytes": 10}
    ]
    assert data["layout"] == {"parallelism": "none", "mesh": [], "dims": [], "placements": [], "coordinate": [],
                              "param_dtype": "float32"}  # fmt: skip
    assert Manifest.from_json(manifest.to_json()) == manifest


def test_a_sharded_layout_round_trips_and_says_where_it_can_be_loaded():
    hsdp = Layout("hsdp", (2, 2), ("replicate", "shard"), ("Replicate()", "Shard(dim=0)"), (1, 0), "bfloat16")
    entries = (Entry("param/w", "float32", (2, 3), 0, 24, (4, 3)),)
    manifest = Manifest(5, 7, 64, 64, tuple(chunk_checksums(bytes(64), 64)), entries, hsdp)
    assert Manifest.from_json(manifest.to_json()) == manifest
    other_group = Layout(
        "hsdp", (2, 2), ("replicate", "shard"), ("Replicate()", "Shard(dim=0)"), (0, 0), "bfloat16"
    )
    assert hsdp.mismatch(other_group) is None  # a replica group holds the same shard
    other_shard = Layout(
        "hsdp", (2, 2), ("replicate", "shard"), ("Replicate()", "Shard(dim=0)"), (1, 1), "bfloat16"
    )
    assert "shard=0" in hsdp.mismatch(other_shard) and "shard=1" in hsdp.mismatch(other_shard)
    fsdp = Layout("fsdp", (4,), ("shard",), ("Shard(dim=0)",), (0,), "bfloat16")
    assert hsdp.mismatch(fsdp) == (
        "it is a shard of hsdp on mesh [2, 2] (replicate=1, shard=0) in bfloat16, this one is of fsdp on mesh [4]"
        " (shard=0) in bfloat16"
    )
    fp32 = Layout("hsdp", (2, 2), ("replicate", "shard"), ("Replicate()", "Shard(dim=0)"), (1, 0), "float32")
    assert hsdp.mismatch(fp32) is not None


@given(
    st.lists(
        st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(0, 5), max_size=3)), max_size=6, unique_by=str
    ),
    st.integers(1, 300),
)
def test_any_layout_round_trips(specs, chunk):
    layout = [
        (f"t{i}", dtype, tuple(shape), DTYPE_BYTES[dtype] * math.prod(shape))
        for i, (dtype, shape) in enumerate(specs)
    ]
    entries, total = build_layout(layout)
    manifest = Manifest(0, 1, total, chunk, tuple(chunk_checksums(bytes(total), chunk)), tuple(entries))
    assert Manifest.from_json(manifest.to_json()) == manifest


@pytest.mark.parametrize(
    "change, why",
    [
        (lambda d: d.update(format=1), "format"),
        (lambda d: d.update(owner=True), "owner"),  # a bool is no integer
        (lambda d: d.update(step=1.0), "step"),
        (lambda d: d.update(nbytes=-1), "nbytes"),
        (lambda d: d.update(extra=1), "exactly"),
        (lambda d: d.pop("entries"), "exactly"),
        (lambda d: d["checksum"].update(algorithm="crc32"), "algorithm"),
        (lambda d: d["checksum"].update(chunk_bytes=0), "chunk_bytes"),
        (lambda d: d["checksum"]["values"].append(0), "checksums for"),
        (lambda d: d["checksum"]["values"].__setitem__(0, 1 << 32), "CRC-32C"),
        (lambda d: d["entries"][0].update(dtype="float32 "), "dtype"),
        (lambda d: d["entries"][0].update(shape=[11], global_shape=[11]), "shape and dtype make 11"),
        (lambda d: d["entries"][0].update(shape=[11]), "larger than"),
        (lambda d: d["entries"][0].update(global_shape=[10, 1]), "does not fit"),
        (lambda d: d.pop("layout"), "exactly"),
        (lambda d: d["layout"].update(parallelism="tp"), "parallelism"),
        (
            lambda d: d["layout"].update(
                mesh=[2], dims=["shard"], placements=["Shard(dim=0)"], coordinate=[2]
            ),
            "coordinate",
        ),
        (
            lambda d: d["layout"].update(
                mesh=[2], dims=["pipeline"], placements=["Shard(dim=0)"], coordinate=[0]
            ),
            "pipeline",
        ),
        (
            lambda d: d["layout"].update(
                mesh=[2], dims=["shard"], placements=["__import__('os')"], coordinate=[0]
            ),
            "placed",
        ),
        (lambda d: d["layout"].update(mesh=[2, 2]), "one value per dimension"),
        (lambda d: d["layout"].update(param_dtype="float8"), "param_dtype"),
        (lambda d: d["entries"][0].update(offset=64), "past the shard"),
        (lambda d: d["entries"][0].update(name=""), "name"),
        (lambda d: d["entries"].append(dict(d["entries"][0])), "twice"),
        (lambda d: d["entries"][0].update(shape="10"), "shape"),
    ],
)
def test_a_malformed_or_inconsistent_manifest_is_refused(change, why):
    data = _json(_manifest())
    change(data)
    with pytest.raises(ManifestError, match=why):
        Manifest.from_json(json.dumps(data).encode())
    assert Manifest.parse(json.dumps(data).encode()) is None


def test_bytes_that_are_no_json_are_refused():
    for raw in (b"\xff\xfe", b"{not json", b"[]", b"null"):
        assert Manifest.parse(raw) is None


def test_peer_dtype_strings_come_from_an_allow_list():
    for bad in ("load", "__class__", "nn", "float32 ", "complex64"):
        with pytest.raises(ManifestError, match="is not one a shard may hold"):
            Entry("param/w", bad, (1,), 0, 4)
        with pytest.raises(ValueError, match="is not one a shard may hold"):
            torch_dtype(bad)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"[" * 100_000, "not UTF-8 JSON"),  # RecursionError inside json
        (b'{"format": 1, "owner": ' + b"9" * 100_000 + b"}", "not UTF-8 JSON"),  # int digits limit
        (b" " * ((16 << 20) + 1), "more than a manifest may hold"),
    ],
    ids=["nested", "huge-integer", "oversized"],
)
def test_json_no_manifest_can_be_is_a_manifest_error(raw, why):
    with pytest.raises(ManifestError, match=why):
        Manifest.from_json(raw)
    assert Manifest.parse(raw) is None


def test_a_manifest_of_too_many_entries_is_refused_before_they_are_checked():
    entries = [
        {"name": f"t{i}", "dtype": "uint8", "shape": [1], "offset": i * 64, "nbytes": 1}
        for i in range(20_001)
    ]
    raw = json.dumps({"format": 2, "owner": 0, "step": 1, "nbytes": 20_001 * 64,
                      "checksum": {"algorithm": "crc32c", "chunk_bytes": 1 << 30, "values": [0]},
                      "layout": Layout().to_data(), "entries": entries}).encode()  # fmt: skip
    with pytest.raises(ManifestError, match="20,001 entries, more than a shard may hold"):
        Manifest.from_json(raw)
