"""Small-file merge: rewrite a day's small files into target-sized files sorted by time and id.

Frequent compaction runs leave many small files per (table, day). A merge reads a bin of
them (bounded by the target size, so memory is bounded too), sorts the rows by
``(time, id, topic, partition, offset)``, writes the result under new names and then swaps
in one manifest commit: the merged files in, the small files out. Readers that go through
the manifest (the warehouse) see the day either before or after, never in between; a crash
before the commit leaves unlisted files that the next writer deletes, a crash after it
leaves replaced files that are deleted the same way. Rows are neither added nor lost: the
merged files must hold exactly the rows of the files they replace, or nothing is swapped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.arrow_schema import PROVENANCE, TableSpec
from pipelines.batch_tables import conform
from pipelines.lake import (
    Lake,
    LakeError,
    LakeFile,
    Manifest,
    OffsetRange,
    ParquetOptions,
    merged_file_name,
    partition_dir,
    write_parquet,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MergeOptions:
    """What counts as small, and how big a merged file may grow."""

    target_file_bytes: int = 64 * 1024 * 1024
    target_file_rows: int = 1_000_000
    parquet: ParquetOptions = field(default_factory=ParquetOptions)

    def is_small(self, f: LakeFile) -> bool:
        return f.bytes < self.target_file_bytes // 2 and f.rows < self.target_file_rows // 2


@dataclass(frozen=True, slots=True)
class MergeResult:
    """One bin merged: how many files and bytes went in and came out."""

    table: str
    date: str
    files_in: int
    files_out: int
    rows: int
    bytes_in: int
    bytes_out: int


def plan_bins(manifest: Manifest, options: MergeOptions) -> list[list[LakeFile]]:
    """Groups of at least two small files of one (table, day), each within the target size."""
    days: dict[tuple[str, str], list[LakeFile]] = {}
    for f in manifest.files.values():
        if options.is_small(f):
            days.setdefault((f.table, f.date), []).append(f)
    bins: list[list[LakeFile]] = []
    for key in sorted(days):
        current: list[LakeFile] = []
        size = rows = 0
        for f in sorted(days[key], key=lambda f: f.path):
            if current and (size + f.bytes > options.target_file_bytes
                            or rows + f.rows > options.target_file_rows):
                bins.append(current)
                current, size, rows = [], 0, 0
            current.append(f)
            size += f.bytes
            rows += f.rows
        bins.append(current)
    return [b for b in bins if len(b) >= 2]


def conform_table(table: pa.Table, spec: TableSpec) -> pa.Table:
    """A lake file's table in the current schema's columns (new ones filled, extras kept)."""
    columns = {name: table[name].combine_chunks() for name in table.column_names}
    provenance = {f.name for f in PROVENANCE}
    body = conform({k: v for k, v in columns.items() if k not in provenance}, spec,
                   table.num_rows)
    declared = {f.name: f for f in spec.file_schema}
    fields = [declared.get(name, pa.field(name, array.type)) for name, array in body.items()]
    arrays = [*body.values(), *[columns[f.name].cast(f.type) for f in PROVENANCE]]
    return pa.Table.from_arrays(arrays, schema=pa.schema([*fields, *PROVENANCE]))


def _coalesce(ranges: Iterable[OffsetRange]) -> tuple[OffsetRange, ...]:
    out: list[OffsetRange] = []
    for r in sorted(ranges, key=lambda r: (r.topic, r.partition, r.first)):
        last = out[-1] if out else None
        if last and last.topic == r.topic and last.partition == r.partition \
                and r.first <= last.last + 1:
            out[-1] = OffsetRange(r.topic, r.partition, last.first, max(last.last, r.last))
        else:
            out.append(r)
    return tuple(out)


def _merge_bin(
    lake: Lake, spec: TableSpec, files: list[LakeFile], generation: int, options: MergeOptions
) -> list[LakeFile]:
    table = pa.concat_tables(
        [conform_table(pq.read_table(lake.path(f.path)), spec) for f in files],
        promote_options="permissive",
    )
    expected = sum(f.rows for f in files)
    if table.num_rows != expected:
        raise LakeError(f"{spec.table} {files[0].date}: files hold {table.num_rows} rows, the "
                        f"manifest says {expected}; not merging")
    keys = [*spec.sort_columns, "_topic", "_partition", "_offset"]
    table = table.sort_by([(k, "ascending") for k in keys])
    fingerprints: dict[str, int] = {}
    for f in files:
        for fp, n in f.fingerprints.items():
            fingerprints[fp] = fingerprints.get(fp, 0) + n
    directory = partition_dir(spec.table, files[0].date)
    lake.ensure_dir(directory)
    relative = f"{directory}/{merged_file_name(generation, 0)}"
    size = write_parquet(lake.path(relative), table, options.parquet, lake.hook)
    lake.hook("merge_file_written")
    ranges = _coalesce(r for f in files for r in f.ranges)
    return [LakeFile(relative, spec.table, files[0].date, table.num_rows, size, ranges,
                     fingerprints)]


def merge_lake(
    lake: Lake,
    manifest: Manifest,
    specs: dict[str, TableSpec],
    options: MergeOptions,
    clock: Callable[[], datetime],
) -> tuple[Manifest, list[MergeResult]]:
    """Merge every bin of small files, one atomic swap per bin; return the new manifest."""
    results = []
    for files in plan_bins(manifest, options):
        spec = specs[files[0].table]
        generation = manifest.generation + 1
        merged = _merge_bin(lake, spec, files, generation, options)
        lake.sync_dirs(f.path for f in merged)
        manifest = manifest.with_swap([f.path for f in files], merged, clock())
        assert manifest.generation == generation
        lake.commit(manifest)
        lake.hook("merge_committed")
        for f in files:
            lake.path(f.path).unlink(missing_ok=True)
            lake.hook("merge_removed")
        lake.sync_dirs(f.path for f in files)
        result = MergeResult(spec.table, files[0].date, len(files), len(merged),
                             sum(f.rows for f in merged), sum(f.bytes for f in files),
                             sum(f.bytes for f in merged))
        logger.info("merged %s %s: %d files -> %d (%d rows)", result.table, result.date,
                    result.files_in, result.files_out, result.rows)
        results.append(result)
    return manifest, results
