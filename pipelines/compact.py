"""Compaction runs: Kafka topics to the Parquet lake to DuckDB, exactly once; and merges.

``run_compact`` is one bounded run: take the lake's lock, delete what an interrupted run
left, capture every partition's end offset, then per batch write the files and commit the
manifest; finally load the new offsets into ``raw.*``, record the run in ``meta.runs`` and
publish the database. ``run_merge`` rewrites small files into sorted, target-sized ones.
Both are what the CLI and the Dagster assets call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer
from pydantic import BaseModel, ConfigDict, Field

from pipelines import avro, warehouse
from pipelines.arrow_schema import DEAD_LETTER_TABLE, TableSpec, lake_tables, table_spec
from pipelines.batch_tables import BatchConverter, ConfluentLookup, TablePiece
from pipelines.catalog import all_topics
from pipelines.errors import RwiEtlError
from pipelines.kafka_read import (
    MessageBatch,
    PartitionRange,
    ReadLimits,
    open_consumer,
    plan_ranges,
    read_range,
    stop_consumer,
    topic_partitions,
)
from pipelines.lake import (
    Hook,
    Lake,
    LakeError,
    LakeFile,
    Manifest,
    OffsetRange,
    ParquetOptions,
    batch_file_name,
    no_hook,
    partition_dir,
    utc_now,
    write_parquet,
)
from pipelines.merge import MergeOptions, MergeResult, merge_lake
from pipelines.settings import Settings

logger = logging.getLogger(__name__)
Clock = Callable[[], datetime]


class CompactionError(RwiEtlError):
    """A run failed; ``summary`` says what it had done (committed work stays committed)."""

    def __init__(self, summary: RunSummary, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.summary = summary
        self.exit_code = getattr(cause, "exit_code", 1)
        self.retriable = getattr(cause, "retriable", False)


class CompactSettings(BaseModel):
    """Tuning of compaction and merge; memory is bounded by the batch and target sizes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch_messages: int = Field(default=100_000, ge=1)
    """Messages per batch (one file per table and day per batch)."""
    max_batch_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    row_group_rows: int = Field(default=128 * 1024, ge=1)
    compression_level: int = 1
    target_file_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    target_file_rows: int = Field(default=1_000_000, ge=1)
    warehouse: bool = True
    """Load ``raw.*`` and record the run; when off, the next run with it on catches up."""
    publish: bool = True
    """Copy the working database to ``<data_dir>/rwi.duckdb`` after the run."""

    def read_limits(self) -> ReadLimits:
        return ReadLimits(max_batch_messages=self.max_batch_messages,
                          max_batch_bytes=self.max_batch_bytes)

    def parquet(self) -> ParquetOptions:
        return ParquetOptions(compression_level=self.compression_level,
                              row_group_rows=self.row_group_rows)

    def merge(self) -> MergeOptions:
        return MergeOptions(target_file_bytes=self.target_file_bytes,
                            target_file_rows=self.target_file_rows, parquet=self.parquet())


class Progress(Protocol):
    """Told how many offsets a run will cover, then how far it got."""

    def planned(self, total: int) -> None: ...

    def advanced(self, offsets: int) -> None: ...


class NoProgress:
    def planned(self, total: int) -> None:
        pass

    def advanced(self, offsets: int) -> None:
        pass


@dataclass(slots=True)
class PartitionSummary:
    """What one run did to one topic-partition."""

    topic: str
    partition: int
    start: int  # the lake's offset when the run began
    end: int  # the end offset captured at the start of the run
    next_offset: int
    messages: int = 0
    files: int = 0
    dead_letters: int = 0
    skipped: int = 0  # offsets deleted by retention before the lake got them
    rows: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class RunSummary:
    """The outcome of one compaction or merge run."""

    run_id: str
    kind: str
    started_at: datetime
    finished_at: datetime | None = None
    status: str = "running"
    partitions: list[PartitionSummary] = field(default_factory=list)
    merges: list[MergeResult] = field(default_factory=list)
    warehouse_rows: dict[str, int] = field(default_factory=dict)
    published: str | None = None
    error: str | None = None

    @property
    def messages(self) -> int:
        return sum(p.messages for p in self.partitions)

    @property
    def files(self) -> int:
        return sum(p.files for p in self.partitions) + sum(m.files_out for m in self.merges)

    @property
    def rows(self) -> int:
        return sum(sum(p.rows.values()) for p in self.partitions)

    def topics(self) -> list[dict[str, Any]]:
        """Per topic: messages, rows, files and each partition's offsets."""
        out: dict[str, dict[str, Any]] = {}
        for p in self.partitions:
            t = out.setdefault(p.topic, {"topic": p.topic, "messages": 0, "rows": 0, "files": 0,
                                         "dead_letters": 0, "skipped": 0, "partitions": {}})
            t["messages"] += p.messages
            t["rows"] += sum(p.rows.values())
            t["files"] += p.files
            t["dead_letters"] += p.dead_letters
            t["skipped"] += p.skipped
            t["partitions"][str(p.partition)] = {"from": p.start, "to": p.next_offset,
                                                 "end": p.end}
        return list(out.values())

    def to_json(self) -> dict[str, Any]:
        duration = ((self.finished_at - self.started_at).total_seconds()
                    if self.finished_at else None)
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_s": duration,
            "messages": self.messages,
            "rows": self.rows,
            "files": self.files,
            "topics": self.topics(),
            "merges": [asdict(m) for m in self.merges],
            "warehouse_rows_added": self.warehouse_rows,
            "published": self.published,
            "error": self.error,
        }


def lake_root(settings: Settings) -> Path:
    return Path(settings.data_dir) / "lake"


def current_specs(schema_dir: Path = avro.SCHEMA_DIR) -> dict[str, TableSpec]:
    return {t: table_spec(t, schema_dir) for t in lake_tables()}


def _write_batch(
    lake: Lake, converter: BatchConverter, batch: MessageBatch, parquet: ParquetOptions
) -> list[LakeFile]:
    """The batch's files, durable but not yet committed."""
    return _write_pieces(lake, converter.convert(batch), batch, parquet)


def _write_pieces(
    lake: Lake, pieces: list[TablePiece], batch: MessageBatch, parquet: ParquetOptions
) -> list[LakeFile]:
    name = batch_file_name(batch.topic, batch.partition, batch.first, batch.last)
    covered = (OffsetRange(batch.topic, batch.partition, batch.first, batch.last),)
    files = []
    for piece in pieces:
        directory = partition_dir(piece.table, piece.date)
        lake.ensure_dir(directory)
        relative = f"{directory}/{name}"
        size = write_parquet(lake.path(relative), piece.data, parquet, lake.hook)
        lake.hook("file_written")
        files.append(LakeFile(relative, piece.table, piece.date, piece.data.num_rows, size,
                              covered, piece.fingerprints))
    lake.sync_dirs(f.path for f in files)
    return files


async def _batches(
    consumer: AIOKafkaConsumer, ranges: list[PartitionRange], limits: ReadLimits
) -> AsyncIterator[tuple[PartitionRange, MessageBatch | None]]:
    """Every batch of every range in order; ``None`` marks the end of a range."""
    for prange in ranges:
        async for batch in read_range(consumer, prange, limits):
            yield prange, batch
        yield prange, None


async def _compact_lake(
    settings: Settings,
    options: CompactSettings,
    lake: Lake,
    manifest: Manifest,
    converter: BatchConverter,
    summary: RunSummary,
    progress: Progress,
    clock: Clock,
    ends: dict[tuple[str, int], int],
) -> Manifest:
    limits = options.read_limits()
    parquet = options.parquet()
    consumer = await open_consumer(settings.kafka.bootstrap, limits)
    # A batch's Parquet files are written in a worker thread (pyarrow holds no GIL while it
    # encodes and compresses) while this thread reads and decodes the next batch; decoding
    # stays here because its many short numpy calls would fight the reader for the GIL.
    # Batches are committed strictly in order. Memory: at most two batches.
    pending: tuple[asyncio.Future[list[LakeFile]], MessageBatch] | None = None

    def commit(files: list[LakeFile], batch: MessageBatch) -> None:
        nonlocal manifest
        manifest = manifest.with_batch(files, batch.topic, batch.partition, batch.last + 1,
                                       clock())
        lake.commit(manifest)
        part = parts[(batch.topic, batch.partition)]
        part.next_offset = batch.last + 1
        part.messages += len(batch)
        part.files += len(files)
        for f in files:
            part.rows[f.table] = part.rows.get(f.table, 0) + f.rows
        part.dead_letters = part.rows.get(DEAD_LETTER_TABLE, 0)
        progress.advanced(batch.last + 1 - batch.first)

    try:
        partitions = await topic_partitions(settings.kafka.bootstrap,
                                            all_topics(settings.topic_prefix))
        ranges = await plan_ranges(consumer, partitions, manifest.offsets)
        ends.update({(r.topic, r.partition): r.end for r in ranges})
        progress.planned(sum(r.pending for r in ranges))
        parts = {
            (r.topic, r.partition): PartitionSummary(r.topic, r.partition, r.requested, r.end,
                                                     r.requested, skipped=r.skipped)
            for r in ranges
        }
        summary.partitions.extend(parts.values())
        async for prange, batch in _batches(consumer, ranges, limits):
            pieces = None
            if batch is not None:
                lake.hook("batch_read")
                try:
                    pieces = converter.convert(batch)
                except Exception as exc:
                    raise LakeError(f"{batch.topic} partition {batch.partition} offsets "
                                    f"{batch.first}-{batch.last}: cannot convert: {exc}") from exc
            if pending is not None:
                future, done = pending
                pending = None
                commit(await future, done)
            if batch is not None and pieces is not None:
                pending = (asyncio.ensure_future(asyncio.to_thread(
                    _write_pieces, lake, pieces, batch, parquet)), batch)
                continue
            part = parts[(prange.topic, prange.partition)]
            if part.next_offset < prange.end:
                # Only gaps (transaction markers, retention) remained: remember they are done.
                progress.advanced(prange.end - max(part.next_offset, prange.start))
                manifest = manifest.with_batch([], prange.topic, prange.partition, prange.end,
                                               clock())
                lake.commit(manifest)
                part.next_offset = prange.end
    finally:
        if pending is not None:
            # Let the worker finish before anything else touches the lake; its files stay
            # uncommitted and are removed by the next run.
            with contextlib.suppress(Exception):
                await pending[0]
        await stop_consumer(consumer)
    return manifest


def _finish(
    lake: Lake,
    manifest: Manifest,
    specs: dict[str, TableSpec],
    schemas: list[avro.AvroSchema],
    summary: RunSummary,
    settings: Settings,
    options: CompactSettings,
    clock: Clock,
    ends: dict[tuple[str, int], int] | None = None,
) -> None:
    """Load the lake into the working database, record the run, publish."""
    paths = warehouse.WarehousePaths.under(Path(settings.data_dir))
    summary.finished_at = clock()
    if not options.warehouse:
        return
    with warehouse.open_work(paths) as con:
        warehouse.ensure_schema(con, specs)
        warehouse.record_schemas(con, schemas)
        summary.warehouse_rows = warehouse.sync_raw(con, lake.root, manifest, specs, clock(),
                                                    ends)
        warehouse.record_run(con, warehouse.RunRecord(
            run_id=summary.run_id, kind=summary.kind, started_at=summary.started_at,
            finished_at=summary.finished_at, status=summary.status,
            messages=summary.messages, rows=summary.rows, files=summary.files,
            detail={"topics": summary.topics(), "merges": [asdict(m) for m in summary.merges]},
            error=summary.error,
        ))
    lake.hook("warehouse_synced")
    if options.publish:
        summary.published = str(warehouse.publish(paths, lake.hook))


def _new_run(kind: str, clock: Clock) -> RunSummary:
    started = clock()
    return RunSummary(f"{started:%Y%m%dT%H%M%S}-{kind}-{uuid.uuid4().hex[:8]}", kind, started)


def _schemas(lake: Lake, specs: dict[str, TableSpec]) -> list[avro.AvroSchema]:
    current = [spec.schema for spec in specs.values()]
    lake.archive_schemas(current)
    older = lake.archived_schemas(skip=[s.fingerprint_hex for s in current])
    return [*older, *current]


async def compact(
    settings: Settings,
    options: CompactSettings | None = None,
    *,
    schema_dir: Path = avro.SCHEMA_DIR,
    confluent_lookup: ConfluentLookup | None = None,
    progress: Progress | None = None,
    hook: Hook = no_hook,
    clock: Clock = utc_now,
) -> RunSummary:
    """One bounded run over the topics under ``settings.topic_prefix``; see the module doc."""
    options = options or CompactSettings()
    progress = progress or NoProgress()
    summary = _new_run("compact", clock)
    lake = Lake(lake_root(settings), hook)
    specs = current_specs(schema_dir)
    with lake.lock():
        manifest = lake.read_manifest()
        lake.collect_garbage(manifest)
        schemas = _schemas(lake, specs)
        converter = BatchConverter(avro.SchemaStore(schemas), schema_dir, confluent_lookup)
        ends: dict[tuple[str, int], int] = {}
        failure: BaseException | None = None
        try:
            manifest = await _compact_lake(settings, options, lake, manifest, converter,
                                           summary, progress, clock, ends)
            summary.status = "ok"
        except Exception as exc:
            failure = exc
            summary.status = "failed"
            summary.error = f"{type(exc).__name__}: {exc}"
            manifest = lake.read_manifest()  # whatever was committed before the failure
        try:
            _finish(lake, manifest, specs, schemas, summary, settings, options, clock, ends)
        except Exception:
            if failure is not None:
                logger.exception("the warehouse could not record the failed run")
                raise CompactionError(summary, failure) from failure
            raise
        if failure is not None:
            raise CompactionError(summary, failure) from failure
    return summary


def run_compact(settings: Settings, options: CompactSettings | None = None,
                **kwargs: Any) -> RunSummary:
    """Synchronous :func:`compact` (for the CLI and Dagster assets)."""
    return asyncio.run(compact(settings, options, **kwargs))


def run_merge(
    settings: Settings,
    options: CompactSettings | None = None,
    *,
    schema_dir: Path = avro.SCHEMA_DIR,
    hook: Hook = no_hook,
    clock: Clock = utc_now,
) -> RunSummary:
    """Merge small lake files into sorted target-sized ones, swapped in atomically."""
    options = options or CompactSettings()
    summary = _new_run("merge", clock)
    lake = Lake(lake_root(settings), hook)
    specs = current_specs(schema_dir)
    with lake.lock():
        manifest = lake.read_manifest()
        lake.collect_garbage(manifest)
        schemas = _schemas(lake, specs)
        before = {t: manifest.rows(t) for t in specs}
        manifest, summary.merges = merge_lake(lake, manifest, specs, options.merge(), clock)
        after = {t: manifest.rows(t) for t in specs}
        if before != after:  # merge_lake checks each bin; this guards the whole run
            raise RuntimeError(f"row counts changed by the merge: {before} -> {after}")
        summary.status = "ok"
        _finish(lake, manifest, specs, schemas, summary, settings, options, clock)
    return summary
