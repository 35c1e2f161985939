"""DuckDB over the lake: the pipeline's own working file and the read-only copy it publishes.

- ``raw.<table>`` are *tables*, loaded from the committed lake files, one row per Kafka
  message, duplicated deliveries included, with their provenance (topic, partition, offset,
  Kafka timestamp, writer schema). Tables rather than views keep the published file
  self-contained: a BI tool can open it on another host or in a container, and a merge of
  lake files never touches it. Columns come from the ``.avsc`` files; a field added to a
  schema is added to the table (``ALTER TABLE … ADD COLUMN``), old rows read null.
- ``staging.<category>`` are views with one row per ``event_id`` (the first delivery by
  receive time, then offset) — what modeling reads.
- ``meta.offsets`` (the lake offsets loaded), ``meta.runs``, ``meta.schemas`` and the view
  ``meta.schema_history`` (every writer fingerprint seen per table, first/last seen),
  ``meta.lake_files`` (the committed Parquet files).

Loading is keyed by offsets: ``meta.offsets`` says up to where each partition is loaded,
and rows are inserted for ``[loaded, committed)`` in the same transaction that advances it,
so a crash at any point leaves the database either before or after a load, never between.
DuckDB allows one writer per file, so readers never open the working file: ``publish``
copies it (after a checkpoint) to a temporary name and renames it over ``rwi.duckdb``. A
reader that has the old file open keeps reading the old copy; the next one to open gets
the new one; nobody ever sees a half-written database and nobody blocks the pipeline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipelines import avro
from pipelines.arrow_schema import DEAD_LETTER_TABLE, PARTITION_COLUMN, TableSpec
from pipelines.errors import RwiEtlError
from pipelines.lake import Hook, LakeFile, Manifest, fsync_dir, fsync_file, no_hook

logger = logging.getLogger(__name__)

PUBLISHED_NAME = "rwi.duckdb"
_READ_OPTIONS = (
    f"union_by_name = true, hive_partitioning = true, hive_types = {{'{PARTITION_COLUMN}': DATE}}"
)


class WarehouseError(RwiEtlError):
    """The working database could not be updated or published."""


class WarehouseBusyError(WarehouseError):
    """Another process holds the working database's write lock."""

    retriable = True
    exit_code = 4


@dataclass(frozen=True, slots=True)
class WarehousePaths:
    """The pipeline's working database and the published read-only copy."""

    work: Path
    published: Path

    @classmethod
    def under(cls, data_dir: Path) -> WarehousePaths:
        """``<data_dir>/warehouse/work.duckdb`` and ``<data_dir>/rwi.duckdb``."""
        root = Path(data_dir)
        return cls(root / "warehouse" / "work.duckdb", root / PUBLISHED_NAME)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One row of ``meta.runs``."""

    run_id: str
    kind: str
    started_at: datetime
    finished_at: datetime
    status: str
    messages: int
    rows: int
    files: int
    detail: Mapping[str, Any]
    error: str | None = None


def sql(con: duckdb.DuckDBPyConnection, query: str, params: Sequence[Any] | None = None
        ) -> list[tuple[Any, ...]]:
    """Run one statement and drain its result (an undrained result blocks the next query)."""
    return con.execute(query, params).fetchall() if params is not None else \
        con.execute(query).fetchall()


def quote(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


@contextlib.contextmanager
def open_work(
    paths: WarehousePaths, *, attempts: int = 20, wait_s: float = 0.5
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The working database, retrying while another process holds its lock; checkpointed and
    closed on exit."""
    paths.work.parent.mkdir(parents=True, exist_ok=True)
    con = None
    for attempt in range(attempts):
        try:
            con = duckdb.connect(str(paths.work))
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or attempt == attempts - 1:
                raise WarehouseBusyError(f"cannot open {paths.work}: {exc}") from exc
            time.sleep(wait_s)
    assert con is not None
    try:
        sql(con, "SET TimeZone = 'UTC'")
        yield con
        sql(con, "CHECKPOINT")
    finally:
        con.close()


def _duckdb_type(con: duckdb.DuckDBPyConnection, field: pa.Field) -> str:
    probe = pa.table({field.name: pa.array([], type=field.type)})
    con.register("_rwi_type_probe", probe)
    try:
        return str(con.execute("DESCRIBE SELECT * FROM _rwi_type_probe").fetchall()[0][1])
    finally:
        con.unregister("_rwi_type_probe")


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    return {str(name): str(dtype) for name, dtype in rows}


def ensure_schema(con: duckdb.DuckDBPyConnection, specs: Mapping[str, TableSpec]) -> None:
    """Create what is missing: schemas, raw tables (and new columns), meta tables, views."""
    for schema in ("raw", "staging", "meta"):
        sql(con, f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for table, spec in specs.items():
        existing = _columns(con, "raw", table)
        if not existing:
            con.register("_rwi_empty", spec.columns.empty_table())
            try:
                sql(con, f"CREATE TABLE raw.{quote(table)} AS SELECT * FROM _rwi_empty")
            finally:
                con.unregister("_rwi_empty")
            continue
        for field in spec.columns:
            if field.name not in existing:
                sql(con, f"ALTER TABLE raw.{quote(table)} ADD COLUMN {quote(field.name)} "
                         f"{_duckdb_type(con, field)}")
                logger.info("raw.%s: new column %s", table, field.name)
    sql(con, """
        CREATE TABLE IF NOT EXISTS meta.offsets (
            topic VARCHAR, "partition" INTEGER, next_offset BIGINT, end_offset BIGINT,
            updated_at TIMESTAMPTZ)""")
    sql(con, """
        CREATE TABLE IF NOT EXISTS meta.runs (
            run_id VARCHAR, kind VARCHAR, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
            duration_s DOUBLE, status VARCHAR, messages BIGINT, "rows" BIGINT, files BIGINT,
            detail JSON, error VARCHAR)""")
    sql(con, """
        CREATE TABLE IF NOT EXISTS meta.schemas (
            fingerprint VARCHAR, name VARCHAR, definition JSON)""")
    sql(con, """
        CREATE TABLE IF NOT EXISTS meta.lake_files (
            path VARCHAR, table_name VARCHAR, event_date DATE, "rows" BIGINT, bytes BIGINT,
            ranges JSON)""")
    _create_views(con, specs)


def _create_views(con: duckdb.DuckDBPyConnection, specs: Mapping[str, TableSpec]) -> None:
    # Recreated on every run so a view always matches the current columns of its table.
    # Of an event's copies the view keeps one that carries the PBX's own time (frames that
    # carry none are stamped on receipt, event_time = received_at), then the earliest.
    history = []
    for table, spec in specs.items():
        raw = f"raw.{quote(table)}"
        if table != DEAD_LETTER_TABLE:
            sql(con, f"""
                CREATE OR REPLACE VIEW staging.{quote(table)} AS
                SELECT *, count(*) OVER (PARTITION BY {quote(spec.id_column)}) AS _deliveries
                FROM {raw}
                QUALIFY row_number() OVER (
                    PARTITION BY {quote(spec.id_column)}
                    ORDER BY event_time = received_at, received_at, _kafka_timestamp,
                             _topic, _partition, _offset) = 1""")
        history.append(f"""
            SELECT '{table}' AS table_name, _schema_fingerprint AS fingerprint,
                   count(*) AS "rows", min(_kafka_timestamp) AS first_seen,
                   max(_kafka_timestamp) AS last_seen
            FROM {raw} GROUP BY _schema_fingerprint""")
    sql(con, f"""
        CREATE OR REPLACE VIEW meta.schema_history AS
        SELECT h.table_name, h.fingerprint, s.name AS schema_name, h."rows", h.first_seen,
               h.last_seen
        FROM ({' UNION ALL '.join(history)}) AS h
        LEFT JOIN meta.schemas AS s USING (fingerprint)""")


def _add_file_columns(
    con: duckdb.DuckDBPyConnection, table: str, files: Sequence[str]
) -> None:
    """Columns some file has (a writer newer than the .avsc) that the table lacks yet."""
    existing = _columns(con, "raw", table)
    described = con.execute(
        f"DESCRIBE SELECT * FROM read_parquet(?, {_READ_OPTIONS})", [list(files)]
    ).fetchall()
    for name, dtype, *_ in described:
        if name not in existing:
            sql(con, f"ALTER TABLE raw.{quote(table)} ADD COLUMN {quote(name)} {dtype}")
            logger.warning("raw.%s: column %s found in lake files but not in the schema",
                           table, name)


def _load(
    con: duckdb.DuckDBPyConnection,
    lake_root: Path,
    table: str,
    files: list[LakeFile],
    ranges: list[tuple[str, int, int, int]],
) -> int:
    """Insert the rows of ``files`` whose offsets fall in ``ranges``; return how many."""
    paths = [str(lake_root / f.path) for f in files]
    _add_file_columns(con, table, paths)
    wanted = pa.table({
        "topic": pa.array([r[0] for r in ranges], pa.string()),
        "part": pa.array([r[1] for r in ranges], pa.int32()),
        "lo": pa.array([r[2] for r in ranges], pa.int64()),
        "hi": pa.array([r[3] for r in ranges], pa.int64()),
    })
    con.register("_rwi_ranges", wanted)
    try:
        inserted = sql(
            con,
            f"""INSERT INTO raw.{quote(table)} BY NAME
                SELECT f.* FROM read_parquet(?, {_READ_OPTIONS}) AS f
                SEMI JOIN _rwi_ranges AS r
                  ON f._topic = r.topic AND f._partition = r.part
                 AND f._offset >= r.lo AND f._offset < r.hi""",
            [paths],
        )
    finally:
        con.unregister("_rwi_ranges")
    return int(inserted[0][0])


def sync_raw(
    con: duckdb.DuckDBPyConnection,
    lake_root: Path,
    manifest: Manifest,
    specs: Mapping[str, TableSpec],
    now: datetime,
    end_offsets: Mapping[tuple[str, int], int] | None = None,
) -> dict[str, int]:
    """Bring ``raw.*`` to the lake's committed state in one transaction; rows added per table."""
    rows = sql(con, 'SELECT topic, "partition", next_offset, end_offset FROM meta.offsets')
    loaded = {(str(t), int(p)): int(n) for t, p, n, _ in rows}
    ends = dict(end_offsets or {})
    for topic, partition, _, end in rows:
        if end is not None:
            ends.setdefault((str(topic), int(partition)), int(end))
    added = dict.fromkeys(specs, 0)
    sql(con, "BEGIN TRANSACTION")
    try:
        # The lake is behind what was loaded only if it was rebuilt; forget the excess.
        for (topic, partition), have in loaded.items():
            committed = manifest.offsets.get((topic, partition), 0)
            if have > committed:
                logger.warning("%s partition %d: warehouse at %d, lake at %d; reloading",
                               topic, partition, have, committed)
                for table in specs:
                    sql(con, f"DELETE FROM raw.{quote(table)} WHERE _topic = ? "
                             "AND _partition = ? AND _offset >= ?",
                        [topic, partition, committed])
        todo = [
            (topic, partition, min(loaded.get((topic, partition), 0), committed), committed)
            for (topic, partition), committed in sorted(manifest.offsets.items())
            if min(loaded.get((topic, partition), 0), committed) < committed
        ]
        if todo:
            for table in specs:
                files = [f for f in manifest.table_files(table)
                         if any(f.overlaps(t, p, lo, hi) for t, p, lo, hi in todo)]
                if files:
                    added[table] += _load(con, lake_root, table, files, todo)
        sql(con, "DELETE FROM meta.offsets")
        if manifest.offsets:
            con.executemany(
                "INSERT INTO meta.offsets VALUES (?, ?, ?, ?, ?)",
                [[t, p, n, ends.get((t, p), n), now]
                 for (t, p), n in sorted(manifest.offsets.items())],
            )
        _replace_lake_files(con, manifest)
        sql(con, "COMMIT")
    except BaseException:
        sql(con, "ROLLBACK")
        raise
    return added


def _replace_lake_files(con: duckdb.DuckDBPyConnection, manifest: Manifest) -> None:
    sql(con, "DELETE FROM meta.lake_files")
    files = list(manifest.files.values())
    if not files:
        return
    con.executemany(
        "INSERT INTO meta.lake_files VALUES (?, ?, CAST(? AS DATE), ?, ?, ?)",
        [[f.path, f.table, f.date, f.rows, f.bytes,
          json.dumps([[r.topic, r.partition, r.first, r.last] for r in f.ranges])]
         for f in sorted(files, key=lambda f: f.path)],
    )


def record_schemas(con: duckdb.DuckDBPyConnection, schemas: Iterable[avro.AvroSchema]) -> None:
    """Add schemas not yet in ``meta.schemas``."""
    known = {str(r[0]) for r in con.execute("SELECT fingerprint FROM meta.schemas").fetchall()}
    fresh = list({s.fingerprint_hex: s for s in schemas
                  if s.fingerprint_hex not in known}.values())
    if fresh:
        con.executemany(
            "INSERT INTO meta.schemas VALUES (?, ?, ?)",
            [[s.fingerprint_hex, s.name, s.canonical] for s in fresh],
        )


def record_run(con: duckdb.DuckDBPyConnection, run: RunRecord) -> None:
    sql(
        con,
        "INSERT INTO meta.runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [run.run_id, run.kind, run.started_at, run.finished_at,
         (run.finished_at - run.started_at).total_seconds(), run.status, run.messages,
         run.rows, run.files, json.dumps(run.detail, sort_keys=True), run.error],
    )


def publish(paths: WarehousePaths, hook: Hook = no_hook) -> Path:
    """Atomically replace the published copy with the (closed, checkpointed) working file."""
    wal = paths.work.with_name(paths.work.name + ".wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise WarehouseError(f"{paths.work} has an unapplied WAL; it must be closed cleanly "
                             "before publishing")
    target = paths.published
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        stale.unlink(missing_ok=True)  # left by a publish that was killed
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(paths.work, tmp)
        fsync_file(tmp)
        hook("publish_copied")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    hook("published")
    return target


def table_counts(db: Path, tables: Iterable[str]) -> dict[str, int]:
    """Rows per ``raw`` table of a database file, opened read-only (for summaries and tests)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            t: int(sql(con, f"SELECT count(*) FROM raw.{quote(t)}")[0][0])
            for t in tables
        }
    finally:
        con.close()
