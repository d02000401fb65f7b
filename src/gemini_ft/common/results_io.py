"""Result files: Parquet tables that carry what made them, written atomically, read without pickle.

The one module that reads and writes gemini-ft's tables: simulator summaries and failure records,
sweep parts, and real-run measurements. Every file's schema metadata holds the package version and
either the resolved scenario as TOML (`gemini_ft.scenario`) or a real run's configuration as JSON
(`gemini_ft.config`). A file is written to a temporary name and renamed into place, so a crash never
leaves a half-written result; a read never unpickles (pandas' metadata block is JSON).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gemini_ft.common.errors import UserError
from gemini_ft.common.version import __version__

PREFIX = "gemini_ft."
SCENARIO = "scenario"
"""Metadata key (after the prefix) of the resolved scenario, as TOML."""
CONFIG = "config"
"""Metadata key of a real run's resolved configuration, as JSON."""
VERSION = "version"
TEMPORARY_SUFFIX = ".tmp"


@dataclass(frozen=True)
class Table:
    """A table read back and its `gemini_ft.*` metadata (keys without the prefix)."""

    frame: pd.DataFrame
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def scenario_toml(self) -> str | None:
        return self.metadata.get(SCENARIO)


NAME_MAX = 255
_VIRTUAL = (Path("/proc"), Path("/sys"), Path("/dev"))
"""Pseudo file systems: writing results there is never what the user meant."""


def check_output_path(field: str, path: Path, *, kind: str) -> Path:
    """The resolved `path`, where a `kind` ('file' or 'dir') can be written; else a UserError naming
    `field`. Run before any work starts, so a bad path is refused now, not after an hour of work."""
    path = Path(path)
    if any(len(os.fsencode(part)) > NAME_MAX for part in path.parts):
        raise UserError(field, str(path), f"a path component is longer than {NAME_MAX} bytes")
    try:
        resolved = path.expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable parent
        raise UserError(field, str(path), f"cannot be resolved ({exc})") from None
    if any(resolved == root or root in resolved.parents for root in _VIRTUAL):
        raise UserError(
            field, str(path), "is on a virtual file system (/proc, /sys, /dev); choose a directory on disk"
        )
    if kind == "dir" and resolved.exists() and not resolved.is_dir():
        raise UserError(field, str(path), "exists and is not a directory")
    if kind == "file" and resolved.is_dir():
        raise UserError(field, str(path), "is an existing directory; a file name is expected")
    ancestor = resolved
    while not ancestor.exists():
        ancestor = ancestor.parent
    if ancestor != resolved and not ancestor.is_dir():
        raise UserError(field, str(path), f"{ancestor} is a file, not a directory")
    directory = ancestor if ancestor.is_dir() else ancestor.parent
    if os.statvfs(directory).f_flag & os.ST_RDONLY:
        raise UserError(field, str(path), "is on a read-only file system")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserError(field, str(path), f"{directory} is not writable")
    return resolved


def temporary_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place (a hidden name ending in .tmp)."""
    return path.with_name(f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}")


def write_table(
    frame: pd.DataFrame, path: Path, metadata: dict[str, str] | None = None, *, private: bool = False
) -> Path:
    """Write `frame` to `path` atomically with the version and `metadata` under `gemini_ft.*`;
    `private` makes the file readable by its owner only (0600), before it appears under its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    schema_metadata = dict(table.schema.metadata or {})
    schema_metadata[(PREFIX + VERSION).encode()] = __version__.encode()
    for key, value in (metadata or {}).items():
        schema_metadata[(PREFIX + key).encode()] = value.encode()
    temporary = temporary_path(path)
    try:
        pq.write_table(table.replace_schema_metadata(schema_metadata), temporary)
        if private:
            os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def read_table(
    path: Path, field: str = "RESULTS", what: str = "a readable Parquet or CSV result file"
) -> Table:
    """A Parquet (or CSV) table and its `gemini_ft.*` metadata; errors name `field` and say it is not `what`."""
    try:
        if path.suffix == ".csv":
            return Table(pd.read_csv(path))
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError, pd.errors.ParserError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(field, str(path), f"not {what} ({reason})") from None
    metadata = _ours(table.schema.metadata)
    # pandas' block (JSON: index and column dtypes, e.g. nullable integers) restores the frame as written.
    return Table(table.to_pandas(), metadata)


def read_metadata(path: Path) -> dict[str, str]:
    """The `gemini_ft.*` metadata of a Parquet file without reading its rows."""
    return _ours(pq.read_schema(path).metadata)


def _ours(raw: dict[bytes, bytes] | None) -> dict[str, str]:
    """The `gemini_ft.*` entries of Parquet schema metadata, keys without the prefix."""
    prefix = PREFIX.encode()
    return {
        k[len(prefix) :].decode(): v.decode(errors="replace")
        for k, v in (raw or {}).items()
        if k.startswith(prefix)
    }
