"""The raw layer as assets: one per lake table (each category topic, and the dead letters),
all materialized by one bounded compaction run, with the checks that gate what follows."""


from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    RetryRequested,
    multi_asset,
)

from dagster_project import metadata as md
from dagster_project.offsets import Lag, end_offsets
from dagster_project.resources import RwiResource
from pipelines import warehouse
from pipelines.arrow_schema import DEAD_LETTER_TABLE, lake_tables
from pipelines.catalog import dead_letter_topic, topic_for
from pipelines.compact import PartitionSummary, RunSummary, lake_root, run_compact
from pipelines.errors import RwiEtlError
from pipelines.lake import Lake, Manifest

DUCKDB_POOL = "duckdb"
RAW_GROUP = "raw"
ROWS_CHECK = "rows_equal_records_read"
DEAD_LETTER_CHECK = "dead_letter_rate"
SCHEMA_CHECK = "no_unknown_schemas"
SCHEMA_REASONS = ("unknown_schema", "unexpected_schema")


def raw_key(table: str) -> AssetKey:
    return AssetKey(["raw", table])


def table_topic(table: str, prefix: str) -> str:
    return dead_letter_topic(prefix) if table == DEAD_LETTER_TABLE else topic_for(table, prefix)


def _description(table: str, prefix: str) -> str:
    topic = table_topic(table, prefix)
    if table == DEAD_LETTER_TABLE:
        return (f"`raw.{table}`: every body or frame that could not become an event — bytes, "
                f"reason and detail — from `{topic}` (rejected at ingest) and from any topic "
                "(values compaction could not decode). Nothing is dropped: a dead letter is "
                "kept here so it can be replayed.")
    return (f"`raw.{table}`: every `{table}` event landed from Kafka topic `{topic}`, one row "
            "per message with its topic, partition and offset; duplicate deliveries are "
            f"kept (`staging.{table}` shows one row per event id). Loaded from the Parquet "
            f"lake (`lake/{table}/event_date=…/`), written exactly once per offset.")


def raw_specs(prefix: str) -> list[AssetSpec]:
    return [
        AssetSpec(raw_key(t), description=_description(t, prefix), group_name=RAW_GROUP,
                  kinds={"kafka", "parquet", "duckdb"},
                  metadata={"kafka_topic": table_topic(t, prefix),
                            "duckdb_table": f"raw.{t}", "lake_path": f"lake/{t}"})
        for t in lake_tables()
    ]


def raw_check_specs() -> list[AssetCheckSpec]:
    specs = [
        AssetCheckSpec(
            ROWS_CHECK, asset=raw_key(t), blocking=True,
            description="Every message read from the topic in this run became exactly one lake "
            "row, no offset was lost to retention, and the DuckDB table holds exactly the "
            "lake's rows.")
        for t in lake_tables()
    ]
    specs.append(AssetCheckSpec(
        DEAD_LETTER_CHECK, asset=raw_key(DEAD_LETTER_TABLE), blocking=True,
        description="Dead letters among all messages of the check window (by Kafka time) stay "
        "under the configured rate."))
    specs.append(AssetCheckSpec(
        SCHEMA_CHECK, asset=raw_key(DEAD_LETTER_TABLE), blocking=True,
        description="No value in the check window carried a schema fingerprint the lake does "
        "not know, and every writer schema of the raw tables is recorded in meta.schemas."))
    return specs


def _offsets_table(parts: list[PartitionSummary], lag: Lag) -> str:
    rows = [(p.partition, p.start, p.next_offset, p.end, lag.ends.get((p.topic, p.partition)),
             lag.of((p.topic, p.partition)), p.skipped)
            for p in sorted(parts, key=lambda p: p.partition)]
    return md.markdown_table(["partition", "from", "to", "end at start", "end now", "lag",
                              "lost to retention"], rows)


def _table_files(manifest: Manifest, table: str) -> tuple[int, int]:
    files = manifest.table_files(table)
    return len(files), sum(f.bytes for f in files)


def _rows_check(table: str, topic: str, parts: list[PartitionSummary], summary: RunSummary,
                db_rows: int, lake_rows: int) -> AssetCheckResult:
    read = sum(p.messages for p in parts)
    written = sum(sum(p.rows.values()) for p in parts)
    skipped = sum(p.skipped for p in parts)
    passed = read == written and db_rows == lake_rows and skipped == 0
    return AssetCheckResult(
        asset_key=raw_key(table), check_name=ROWS_CHECK, passed=passed,
        metadata={"kafka_topic": topic, "messages_read": read, "rows_written": written,
                  "offsets_lost_to_retention": skipped, "duckdb_rows": db_rows,
                  "lake_rows": lake_rows, "compaction_run": summary.run_id},
        description=None if passed else (
            f"{topic}: {read} messages read, {written} rows written, {skipped} offsets lost; "
            f"raw.{table} has {db_rows} rows, the lake {lake_rows}"))


def _window_counts(con: duckdb.DuckDBPyConnection, since: datetime) -> dict[str, int]:
    counts = {}
    for table in lake_tables():
        row = con.execute(
            f"SELECT count(*) FROM raw.{warehouse.quote(table)} WHERE _kafka_timestamp >= ?",
            [since]).fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


def _dead_letter_checks(con: duckdb.DuckDBPyConnection, rwi: RwiResource,
                        now: datetime) -> Iterator[AssetCheckResult]:
    since = now - timedelta(hours=rwi.check_window_hours)
    counts = _window_counts(con, since)
    total = sum(counts.values())
    dead = counts[DEAD_LETTER_TABLE]
    rate = dead / total if total else 0.0
    reasons = con.execute(
        "SELECT reason, count(*) AS n FROM raw.deadletter WHERE _kafka_timestamp >= ? "
        "GROUP BY reason ORDER BY n DESC, reason", [since]).fetchall()
    passed = dead < rwi.dead_letter_min_count or rate <= rwi.dead_letter_max_rate
    yield AssetCheckResult(
        asset_key=raw_key(DEAD_LETTER_TABLE), check_name=DEAD_LETTER_CHECK, passed=passed,
        metadata={"dead_letters": dead, "messages": total, "rate": rate,
                  "max_rate": rwi.dead_letter_max_rate, "window_start": since.isoformat(),
                  "by_reason": MetadataValue.md(md.markdown_table(["reason", "dead letters"],
                                                                  reasons))},
        description=None if passed else (
            f"{dead} dead letters among {total} messages since {since:%Y-%m-%d %H:%M} UTC "
            f"({rate:.1%} > {rwi.dead_letter_max_rate:.1%})"))
    unknown = sum(n for reason, n in reasons if reason in SCHEMA_REASONS)
    unrecorded = con.execute(
        "SELECT table_name, fingerprint, \"rows\" FROM meta.schema_history "
        "WHERE schema_name IS NULL AND fingerprint IS NOT NULL ORDER BY 1, 2").fetchall()
    samples = con.execute(
        "SELECT _topic, _partition, _offset, detail FROM raw.deadletter "
        "WHERE _kafka_timestamp >= ? AND reason IN ('unknown_schema', 'unexpected_schema') "
        "ORDER BY _kafka_timestamp DESC LIMIT 5", [since]).fetchall()
    passed = unknown == 0 and not unrecorded
    yield AssetCheckResult(
        asset_key=raw_key(DEAD_LETTER_TABLE), check_name=SCHEMA_CHECK, passed=passed,
        metadata={"undecodable_values": unknown, "unrecorded_fingerprints": len(unrecorded),
                  "window_start": since.isoformat(),
                  "examples": MetadataValue.md(md.markdown_table(
                      ["topic", "partition", "offset", "detail"], samples))},
        description=None if passed else (
            f"{unknown} values with an unknown writer schema since {since:%Y-%m-%d %H:%M} UTC; "
            f"{len(unrecorded)} fingerprints missing from meta.schemas"))


def _compact(rwi: RwiResource) -> RunSummary:
    try:
        return run_compact(rwi.settings(), rwi.compact_settings())
    except RwiEtlError as exc:
        if exc.retriable:
            # Committed batches stay committed; a retry continues from the lake's offsets.
            raise RetryRequested(max_retries=3, seconds_to_wait=10) from exc
        raise


def materialize_raw(context: AssetExecutionContext,
                    rwi: RwiResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """One bounded compaction run, then per table its numbers and checks."""
    settings = rwi.settings()
    summary = _compact(rwi)
    context.log.info("compaction %s: %d messages, %d rows, %d files", summary.run_id,
                     summary.messages, summary.rows, summary.files)
    manifest = Lake(lake_root(settings)).read_manifest()
    lag = Lag(end_offsets(settings), dict(manifest.offsets))
    by_topic: dict[str, list[PartitionSummary]] = {}
    for part in summary.partitions:
        by_topic.setdefault(part.topic, []).append(part)
    now = datetime.now(UTC)
    checks: list[AssetCheckResult] = []
    with warehouse.open_work(rwi.paths()) as con:
        for table in lake_tables():
            topic = table_topic(table, settings.topic_prefix)
            parts = by_topic.get(topic, [])
            db_rows = md.count(con, "raw", table)
            files, size = _table_files(manifest, table)
            meta: dict[str, Any] = {
                "dagster/row_count": db_rows,
                "rows_added": summary.warehouse_rows.get(table, 0),
                "messages_read": sum(p.messages for p in parts),
                "files_written": sum(p.files for p in parts),
                "lake_files": files,
                "lake_bytes": size,
                "lag": sum(lag.of((topic, p.partition)) for p in parts),
                "offsets": MetadataValue.md(_offsets_table(parts, lag)),
                "compaction_run": summary.run_id,
                "dagster/column_schema": md.column_schema(con, "raw", table),
            }
            yield MaterializeResult(asset_key=raw_key(table), metadata=meta)
            checks.append(_rows_check(table, topic, parts, summary, db_rows,
                                      manifest.rows(table)))
        checks.extend(_dead_letter_checks(con, rwi, now))
    yield from checks


def build_raw_assets(prefix: str) -> Any:
    """The compaction multi-asset for the topics under ``prefix``."""

    @multi_asset(
        name="compact_kafka_to_lake",
        specs=raw_specs(prefix),
        check_specs=raw_check_specs(),
        pool=DUCKDB_POOL,
        description="One bounded compaction run over every topic of the prefix: each "
        "partition from the lake's stored offset to the end offset seen when the run starts, "
        "into the Parquet lake (offsets committed with the files), then into raw.* of the "
        "working DuckDB database. Kafka consumer offsets are never committed.",
    )
    def compact_kafka_to_lake(
        context: AssetExecutionContext, rwi: RwiResource
    ) -> Iterator[MaterializeResult | AssetCheckResult]:
        yield from materialize_raw(context, rwi)

    return compact_kafka_to_lake

