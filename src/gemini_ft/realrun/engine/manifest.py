"""The shard manifest: what a flat shard holds and how to verify it, as a frozen, validated value.

A manifest sits beside every shared-memory slot and travels with every replica, so it arrives from
peers and from memory other processes wrote: `Manifest.from_json` is the only way in from bytes.
Every field is checked at construction — integers are integers (not bools or floats), sizes and
offsets fit the shard, each entry's size is its shape times its dtype's size, dtypes come from an
allow-list (a peer's string is looked up, never evaluated), the checksum is CRC-32C with one value
per chunk — and anything else is a `ManifestError`. The JSON is plain: names, dtypes, shapes,
offsets, step, per-chunk checksums, and the `Layout`: which parallelism and device mesh the shard
belongs to and where in the mesh it sits, so a shard is never loaded into another mesh or position.
Each entry records its local shape (what the shard holds) and its global shape (the tensor it is a
part of). `build_layout` lays entries out at 64-byte aligned offsets.
Sizes are bounded before anything is parsed (bytes, entries), and JSON that no manifest can be
(nested past the parser's stack, a 100,000-digit integer) is a `ManifestError` like any other.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from gemini_ft.realrun.engine.checksums import ALGORITHM, checksum_count

FORMAT = 2
ALIGN = 64
PARALLELISMS = ("none", "ddp", "fsdp", "hsdp")
MESH_DIMS = ("zero", "shard", "replicate")
PLACEMENTS = ("Zero1()", "Shard(dim=0)", "Replicate()")
PARAM_DTYPES = ("float32", "bfloat16")
# Every dtype a shard may hold, with its size in bytes.
DTYPE_BYTES = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "int16": 2,
    "int8": 1, "uint8": 1, "bool": 1,
}  # fmt: skip
DTYPES = tuple(DTYPE_BYTES)
MAX_BYTES = 16 << 20
"""The longest manifest read (a 405B model's shard holds a few thousand tensors: well under 1 MiB)."""
MAX_ENTRIES = 20_000
"""The most tensors a shard may hold; every entry is checked, so this bounds the time a parse takes."""
_KEYS = {"format", "owner", "step", "nbytes", "checksum", "layout", "entries"}
_CHECKSUM_KEYS = {"algorithm", "chunk_bytes", "values"}
_LAYOUT_KEYS = {"parallelism", "mesh", "dims", "placements", "coordinate", "param_dtype"}
_ENTRY_KEYS = {"name", "dtype", "shape", "global_shape", "offset", "nbytes"}


class ManifestError(ValueError):
    """A manifest that is malformed or does not describe its shard consistently."""


def _int(value: Any, what: str, low: int = 0, high: int | None = None) -> int:
    # bool is an int subclass: `true` must not pass for 1.
    if type(value) is not int or value < low or (high is not None and value >= high):
        bound = f" and below {high}" if high is not None else ""
        raise ManifestError(f"{what} must be an integer of at least {low}{bound}, not {value!r}")
    return value


@dataclass(frozen=True)
class Layout:
    """Where a shard belongs: the job's parallelism and device mesh (shape, dimension names, each
    dimension's placement of the parameters) and the shard's coordinate in it. Training precision
    (`param_dtype`, the dtype of the forward's parameters) is part of it: a bf16 job's state means
    something else to an fp32 job."""

    parallelism: str = "none"
    mesh: tuple[int, ...] = ()
    dims: tuple[str, ...] = ()
    placements: tuple[str, ...] = ()
    coordinate: tuple[int, ...] = ()
    param_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.parallelism not in PARALLELISMS:
            raise ManifestError(f"parallelism {self.parallelism!r} is not one of {', '.join(PARALLELISMS)}")
        if self.param_dtype not in PARAM_DTYPES:
            raise ManifestError(f"param_dtype {self.param_dtype!r} is not one of {', '.join(PARAM_DTYPES)}")
        for name in ("mesh", "dims", "placements", "coordinate"):
            if not isinstance(getattr(self, name), tuple):
                raise ManifestError(f"layout {name} must be a tuple, not {getattr(self, name)!r}")
        if not len(self.mesh) == len(self.dims) == len(self.placements) == len(self.coordinate):
            raise ManifestError(
                "layout mesh, dims, placements and coordinate must have one value per dimension"
            )
        for size, dim, placement, at in zip(
            self.mesh, self.dims, self.placements, self.coordinate, strict=True
        ):
            _int(size, "a mesh dimension", low=1)
            _int(at, f"the coordinate on {dim}", high=size)
            if dim not in MESH_DIMS or placement not in PLACEMENTS:
                raise ManifestError(
                    f"mesh dimension {dim!r} placed {placement!r} is not one a shard may have"
                )

    def to_data(self) -> dict[str, Any]:
        return {
            "parallelism": self.parallelism, "mesh": list(self.mesh), "dims": list(self.dims),
            "placements": list(self.placements), "coordinate": list(self.coordinate),
            "param_dtype": self.param_dtype,
        }  # fmt: skip

    @classmethod
    def from_data(cls, data: Any) -> Layout:
        data = _keys(data, _LAYOUT_KEYS, "layout")
        for name in ("mesh", "dims", "placements", "coordinate"):
            if not isinstance(data[name], list):
                raise ManifestError(f"layout {name} must be a list, not {data[name]!r}")
        return cls(
            data["parallelism"], tuple(data["mesh"]), tuple(data["dims"]), tuple(data["placements"]),
            tuple(data["coordinate"]), data["param_dtype"],
        )  # fmt: skip

    def describe(self) -> str:
        at = ", ".join(f"{d}={c}" for d, c in zip(self.dims, self.coordinate, strict=True))
        return f"{self.parallelism} on mesh {list(self.mesh)} ({at}) in {self.param_dtype}"

    def mismatch(self, expected: Layout) -> str | None:
        """Why a shard of this layout cannot be loaded where `expected` is (None: it can). Shards that
        differ only in their replica group hold the same state (HSDP replicates them)."""
        same = (self.parallelism, self.mesh, self.dims, self.placements, self.param_dtype) == (
            expected.parallelism, expected.mesh, expected.dims, expected.placements, expected.param_dtype,
        )  # fmt: skip
        if same and all(
            dim == "replicate" or a == b
            for dim, a, b in zip(self.dims, self.coordinate, expected.coordinate, strict=True)
        ):
            return None
        return f"it is a shard of {self.describe()}, this one is of {expected.describe()}"


@dataclass(frozen=True)
class Entry:
    """One tensor inside a flat shard: where its bytes live and how to view them. `shape` is what the
    shard holds; `global_shape` the tensor it is a part of (the same for a tensor that is not sharded)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int
    global_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.global_shape is None:
            object.__setattr__(self, "global_shape", self.shape)
        if not isinstance(self.global_shape, tuple) or len(self.global_shape) != len(self.shape):
            raise ManifestError(
                f"entry {self.name}: global shape {self.global_shape!r} does not fit {self.shape!r}"
            )
        for size, local in zip(self.global_shape, self.shape, strict=True):
            if _int(size, f"entry {self.name}: a global dimension") < local:
                raise ManifestError(
                    f"entry {self.name}: local shape {self.shape} is larger than {self.global_shape}"
                )
        if not isinstance(self.name, str) or not self.name:
            raise ManifestError(f"entry name must be a non-empty string, not {self.name!r}")
        if self.dtype not in DTYPE_BYTES:
            raise ManifestError(f"entry {self.name}: dtype {self.dtype!r} is not one a shard may hold")
        if not isinstance(self.shape, tuple):
            raise ManifestError(f"entry {self.name}: shape must be a tuple, not {self.shape!r}")
        for size in self.shape:
            _int(size, f"entry {self.name}: a dimension")
        _int(self.offset, f"entry {self.name}: offset")
        expected = math.prod(self.shape) * DTYPE_BYTES[self.dtype]
        if _int(self.nbytes, f"entry {self.name}: nbytes") != expected:
            raise ManifestError(
                f"entry {self.name}: {self.nbytes} bytes, but its shape and dtype make {expected}"
            )

    @property
    def end(self) -> int:
        return self.offset + self.nbytes


@dataclass(frozen=True)
class Manifest:
    """A committed shard: whose (owner), of which step, its size, its checksums and its entries."""

    owner: int
    step: int
    nbytes: int
    checksum_chunk: int
    checksums: tuple[int, ...]
    entries: tuple[Entry, ...] = field(default=())
    layout: Layout = field(default_factory=Layout)

    def __post_init__(self) -> None:
        if not isinstance(self.layout, Layout):
            raise ManifestError(f"layout must be a Layout, not {self.layout!r}")
        _int(self.owner, "owner")
        _int(self.step, "step")
        _int(self.nbytes, "nbytes")
        _int(self.checksum_chunk, "checksum chunk_bytes", low=1)
        if not isinstance(self.checksums, tuple) or not isinstance(self.entries, tuple):
            raise ManifestError("checksums and entries must be tuples")
        expected = checksum_count(self.nbytes, self.checksum_chunk)
        if len(self.checksums) != expected:
            raise ManifestError(f"{len(self.checksums)} checksums for {expected} chunks")
        for value in self.checksums:
            _int(value, "a CRC-32C", high=1 << 32)
        names = set()
        for entry in self.entries:
            if not isinstance(entry, Entry):
                raise ManifestError(f"entries must be Entry values, not {entry!r}")
            if entry.end > self.nbytes:
                raise ManifestError(
                    f"entry {entry.name} ends at byte {entry.end}, past the shard's {self.nbytes}"
                )
            if entry.name in names:
                raise ManifestError(f"entry {entry.name} appears twice")
            names.add(entry.name)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": FORMAT, "owner": self.owner, "step": self.step, "nbytes": self.nbytes,
                "checksum": {
                    "algorithm": ALGORITHM, "chunk_bytes": self.checksum_chunk, "values": list(self.checksums)
                },
                "layout": self.layout.to_data(),
                "entries": [
                    {"name": e.name, "dtype": e.dtype, "shape": list(e.shape), "global_shape": list(e.global_shape),
                     "offset": e.offset, "nbytes": e.nbytes}
                    for e in self.entries
                ],
            },
            separators=(",", ":"),
        ).encode()  # fmt: skip

    @classmethod
    def from_json(cls, raw: bytes | bytearray | memoryview) -> Manifest:
        """The manifest `raw` holds, or ManifestError: exactly the fields `to_json` writes, each checked."""
        if len(raw) > MAX_BYTES:
            raise ManifestError(f"{len(raw):,} bytes, more than a manifest may hold ({MAX_BYTES:,})")
        try:
            data = json.loads(bytes(raw).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: also a huge integer
            raise ManifestError(f"not UTF-8 JSON of a manifest: {type(exc).__name__}") from None
        _keys(data, _KEYS, "manifest")
        if data["format"] != FORMAT:
            raise ManifestError(f"format {data['format']!r} is not {FORMAT}")
        check = _keys(data["checksum"], _CHECKSUM_KEYS, "checksum")
        if check["algorithm"] != ALGORITHM:  # a copy we cannot verify is a copy we cannot use
            raise ManifestError(f"checksum algorithm {check['algorithm']!r} is not {ALGORITHM}")
        if not isinstance(check["values"], list) or not isinstance(data["entries"], list):
            raise ManifestError("checksum values and entries must be lists")
        if len(data["entries"]) > MAX_ENTRIES:
            raise ManifestError(
                f"{len(data['entries']):,} entries, more than a shard may hold ({MAX_ENTRIES:,})"
            )
        entries = []
        for item in data["entries"]:
            item = _keys(item, _ENTRY_KEYS, "entry")
            if not isinstance(item["shape"], list) or not isinstance(item["global_shape"], list):
                raise ManifestError(
                    f"entry shapes must be lists, not {item['shape']!r}, {item['global_shape']!r}"
                )
            entries.append(
                Entry(item["name"], item["dtype"], tuple(item["shape"]), item["offset"], item["nbytes"],
                      tuple(item["global_shape"]))
            )  # fmt: skip
        return cls(
            data["owner"],
            data["step"],
            data["nbytes"],
            check["chunk_bytes"],
            tuple(check["values"]),
            tuple(entries),
            Layout.from_data(data["layout"]),
        )

    @classmethod
    def parse(cls, raw: bytes | bytearray | memoryview) -> Manifest | None:
        """`from_json`, or None for anything that is not a valid manifest."""
        try:
            return cls.from_json(raw)
        except ManifestError:
            return None


def _keys(value: Any, keys: set[str], what: str) -> dict:
    if not isinstance(value, dict) or value.keys() != keys:
        found = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise ManifestError(f"{what} must hold exactly {sorted(keys)}, not {found}")
    return value


def build_layout(specs: list[tuple[str, str, tuple[int, ...], int]]) -> tuple[list[Entry], int]:
    """Entries at 64-byte aligned offsets for (name, dtype, shape, nbytes) specs; returns (entries, total)."""
    entries, offset = [], 0
    for name, dtype, shape, nbytes in specs:
        entries.append(Entry(name, dtype, tuple(int(s) for s in shape), offset, int(nbytes)))
        offset += -(-int(nbytes) // ALIGN) * ALIGN
    return entries, offset
