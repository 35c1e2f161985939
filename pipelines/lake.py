"""The Parquet lake: file layout, atomic writes, the manifest that commits them, and its lock.

Layout under ``<data_dir>/lake``::

    _manifest.json            the commit point: committed files and next offsets
    _lock                     held (flock) by the one process writing the lake
    _schemas/<fp>.json        every writer schema the lake has met, by fingerprint
    <table>/event_date=YYYY-MM-DD/<topic>+<partition>+<first>-<last>.parquet
    <table>/event_date=YYYY-MM-DD/merged-<generation>-<n>.parquet

A batch of offsets ``first..last`` of one partition becomes one file per (table, date) it
has rows for, all named after that range, so re-running the same batch rewrites the same
files. Files are written to a hidden temporary name, fsynced and renamed; only then is the
manifest rewritten (temp, fsync, rename, fsync of the directory), adding the files and the
partition's next offset in one atomic step. A file the manifest does not list is not part
of the lake: whatever a crash leaves behind is deleted by the next writer before it starts.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import avro
from pipelines.arrow_schema import PARTITION_COLUMN, lake_tables, strip_internal
from pipelines.errors import RwiEtlError, SchemaError

logger = logging.getLogger(__name__)

Hook = Callable[[str], None]
MANIFEST_FORMAT = 1


class LakeError(RwiEtlError):
    """The lake on disk is not in a state this version can work with."""


class LakeBusyError(RwiEtlError):
    """Another process is writing the lake; try again when it is done."""

    retriable = True
    exit_code = 4


def no_hook(_point: str) -> None:
    """Default hook: crash tests pass one that stops the process at a named point."""


def batch_file_name(topic: str, partition: int, first: int, last: int) -> str:
    """``<topic>+<partition>+<first>-<last>.parquet``, the name of a compaction batch's file."""
    return f"{topic}+{partition}+{first}-{last}.parquet"


def merged_file_name(generation: int, index: int) -> str:
    return f"merged-{generation:012d}-{index:04d}.parquet"


def partition_dir(table: str, date: str) -> str:
    """Hive partition directory of a table's day, relative to the lake root."""
    return f"{table}/{PARTITION_COLUMN}={date}"


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """Offsets ``first..last`` (inclusive) of one topic-partition."""

    topic: str
    partition: int
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class LakeFile:
    """One committed Parquet file. Its rows come from ``ranges`` (a subset: one table, one day)."""

    path: str  # relative to the lake root
    table: str
    date: str
    rows: int
    bytes: int
    ranges: tuple[OffsetRange, ...]
    fingerprints: Mapping[str, int]  # writer schema fingerprint -> rows

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "date": self.date,
            "rows": self.rows,
            "bytes": self.bytes,
            "ranges": [[r.topic, r.partition, r.first, r.last] for r in self.ranges],
            "fingerprints": dict(sorted(self.fingerprints.items())),
        }

    @classmethod
    def from_json(cls, path: str, doc: Mapping[str, Any]) -> LakeFile:
        return cls(
            path=path,
            table=doc["table"],
            date=doc["date"],
            rows=int(doc["rows"]),
            bytes=int(doc["bytes"]),
            ranges=tuple(OffsetRange(t, int(p), int(a), int(b)) for t, p, a, b in doc["ranges"]),
            fingerprints={str(k): int(v) for k, v in doc["fingerprints"].items()},
        )

    def overlaps(self, topic: str, partition: int, start: int, end: int) -> bool:
        """Whether the file holds offsets of ``[start, end)`` of that partition."""
        return any(
            r.topic == topic and r.partition == partition and r.first < end and r.last >= start
            for r in self.ranges
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    """The committed state of the lake."""

    generation: int = 0
    committed_at: str | None = None
    offsets: Mapping[tuple[str, int], int] = field(default_factory=dict)
    files: Mapping[str, LakeFile] = field(default_factory=dict)

    def table_files(self, table: str) -> list[LakeFile]:
        return sorted((f for f in self.files.values() if f.table == table), key=lambda f: f.path)

    def rows(self, table: str | None = None) -> int:
        return sum(f.rows for f in self.files.values() if table is None or f.table == table)

    def with_batch(
        self, files: Iterable[LakeFile], topic: str, partition: int, next_offset: int, now: datetime
    ) -> Manifest:
        """The manifest after a batch: its files added, the partition's offset advanced."""
        added = {f.path: f for f in files}
        return replace(
            self,
            generation=self.generation + 1,
            committed_at=now.isoformat(),
            offsets={**self.offsets, (topic, partition): next_offset},
            files={**self.files, **added},
        )

    def with_swap(
        self, removed: Iterable[str], added: Iterable[LakeFile], now: datetime
    ) -> Manifest:
        """The manifest after a merge: ``removed`` replaced by ``added`` in one step."""
        files = dict(self.files)
        for path in removed:
            del files[path]
        files.update({f.path: f for f in added})
        return replace(self, generation=self.generation + 1, committed_at=now.isoformat(),
                       files=files)

    def to_json(self) -> dict[str, Any]:
        offsets: dict[str, dict[str, int]] = {}
        for (topic, partition), next_offset in sorted(self.offsets.items()):
            offsets.setdefault(topic, {})[str(partition)] = next_offset
        return {
            "format": MANIFEST_FORMAT,
            "generation": self.generation,
            "committed_at": self.committed_at,
            "offsets": offsets,
            "files": {path: f.to_json() for path, f in sorted(self.files.items())},
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Manifest:
        if doc.get("format") != MANIFEST_FORMAT:
            raise LakeError(f"unknown lake manifest format {doc.get('format')!r}")
        return cls(
            generation=int(doc["generation"]),
            committed_at=doc.get("committed_at"),
            offsets={
                (topic, int(p)): int(n)
                for topic, parts in doc["offsets"].items()
                for p, n in parts.items()
            },
            files={path: LakeFile.from_json(path, f) for path, f in doc["files"].items()},
        )


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path: Path) -> Path:
    """Hidden sibling used while writing ``path`` (invisible to ``*.parquet`` globs)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: Path, data: bytes, hook: Hook = no_hook, point: str = "") -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync of the directory."""
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if point:
            hook(point)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@dataclass(frozen=True, slots=True)
class ParquetOptions:
    """How files are encoded.

    Plain encoding under zstd level 1 measured smaller and several times faster to write than
    dictionary encoding for these tables (ids and JSON text are near-unique); statistics are
    kept for the numeric and time columns that readers filter on.
    """

    compression: str = "zstd"
    compression_level: int = 1
    row_group_rows: int = 128 * 1024
    use_dictionary: bool = False


def _statistics_columns(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema
            if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)
            or pa.types.is_date(f.type)]


def write_parquet(
    path: Path, table: pa.Table, options: ParquetOptions, hook: Hook = no_hook
) -> int:
    """Write ``table`` to ``path`` atomically; return its size.

    The rename is durable once the caller fsyncs the directory (once per batch).
    """
    tmp = temp_name(path)
    try:
        with pq.ParquetWriter(
            str(tmp), table.schema, compression=options.compression,
            compression_level=options.compression_level, use_dictionary=options.use_dictionary,
            write_statistics=_statistics_columns(table.schema),
        ) as writer:
            for start in range(0, max(table.num_rows, 1), options.row_group_rows):
                writer.write_table(table.slice(start, options.row_group_rows))
                hook("row_group_written")
        fsync_file(tmp)
        hook("file_synced")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path.stat().st_size


class Lake:
    """One lake root on the local file system."""

    def __init__(self, root: Path, hook: Hook = no_hook) -> None:
        self.root = Path(root)
        self.hook = hook
        self.manifest_path = self.root / "_manifest.json"
        self.schema_dir = self.root / "_schemas"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the lake's writer lock (released by the kernel if the process dies)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "_lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise LakeBusyError(
                        f"another compaction or merge is writing {self.root}; try again later"
                    ) from exc
                raise
            yield
        finally:
            os.close(fd)

    def read_manifest(self) -> Manifest:
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Manifest()
        try:
            return Manifest.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise LakeError(f"{self.manifest_path} is unreadable: {exc}") from exc

    def commit(self, manifest: Manifest) -> None:
        """Atomically make ``manifest`` the lake's state."""
        data = json.dumps(manifest.to_json(), separators=(",", ":")).encode()
        write_atomic(self.manifest_path, data, self.hook, "manifest_written")
        self.hook("committed")

    def path(self, relative: str) -> Path:
        return self.root / relative

    def ensure_dir(self, relative: str) -> Path:
        """Create a directory under the root, durably (its new entries fsynced upwards)."""
        path = self.root / relative
        if not path.is_dir():
            missing = [p for p in (path, *path.parents) if not p.exists()]
            path.mkdir(parents=True, exist_ok=True)
            for created in missing:
                fsync_dir(created.parent)
        return path

    def sync_dirs(self, relatives: Iterable[str]) -> None:
        """fsync the directories of freshly renamed files."""
        for directory in sorted({str(Path(r).parent) for r in relatives}):
            fsync_dir(self.root / directory)

    def collect_garbage(self, manifest: Manifest) -> list[str]:
        """Delete every file under the table directories that the manifest does not list."""
        removed: list[str] = []
        for directory in (self.root, self.schema_dir):
            for stale in directory.glob(".*.tmp") if directory.is_dir() else ():
                stale.unlink()  # a manifest or schema write that was interrupted
        for table in lake_tables():
            table_dir = self.root / table
            if not table_dir.is_dir():
                continue
            for day in sorted(table_dir.iterdir()):
                if not day.is_dir():
                    continue
                for item in sorted(day.iterdir()):
                    relative = f"{table}/{day.name}/{item.name}"
                    if relative not in manifest.files and item.is_file():
                        item.unlink()
                        removed.append(relative)
                if not any(day.iterdir()):
                    day.rmdir()
                else:
                    fsync_dir(day)
        if removed:
            logger.info("removed %d uncommitted or replaced file(s) from %s", len(removed),
                        self.root)
        return removed

    def archive_schemas(self, schemas: Iterable[avro.AvroSchema]) -> None:
        """Keep a copy of each schema, so values written with it decode after it changes."""
        self.schema_dir.mkdir(parents=True, exist_ok=True)
        for schema in schemas:
            path = self.schema_dir / f"{schema.fingerprint_hex}.json"
            if not path.exists():
                doc = {"name": schema.name, "schema": strip_internal(schema.parsed)}
                write_atomic(path, json.dumps(doc, sort_keys=True, indent=1).encode())

    def archived_schemas(self, skip: Iterable[str] = ()) -> list[avro.AvroSchema]:
        """Every schema in the archive (but the fingerprints in ``skip``), checked against its
        fingerprint."""
        found: list[avro.AvroSchema] = []
        if not self.schema_dir.is_dir():
            return found
        known = set(skip)
        for path in sorted(self.schema_dir.glob("*.json")):
            if path.stem in known:
                continue
            doc = json.loads(path.read_text(encoding="utf-8"))
            schema = avro.schema_from_dict(doc["schema"])
            if schema.fingerprint_hex != path.stem:
                raise SchemaError(f"{path} does not hash to its name ({schema.fingerprint_hex})")
            found.append(replace(schema, name=doc["name"]))
        return found


def utc_now() -> datetime:
    return datetime.now(UTC)
