"""The published database: the read-only copy SQL users and BI tools open, and its freshness."""


from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from dagster_project import metadata as md
from dagster_project.offsets import (
    Lag,
    Offsets,
    database_offsets,
    end_offsets,
    oldest_pending,
)
from dagster_project.raw import DUCKDB_POOL
from dagster_project.resources import RwiResource
from pipelines import warehouse

PUBLISHED_KEY = AssetKey(["published", "rwi_duckdb"])
FRESHNESS_CHECK = "freshness"


@dataclass(frozen=True, slots=True)
class Freshness:
    """How far the published database is behind Kafka."""

    passed: bool
    metadata: dict[str, Any]
    description: str | None


def evaluate_freshness(rwi: RwiResource, now: datetime | None = None,
                       ends: Offsets | None = None,
                       published: Offsets | None = None) -> Freshness:
    """Age of the oldest Kafka message not yet in the published database, against the SLO."""
    now = now or datetime.now(UTC)
    settings = rwi.settings()
    ends = end_offsets(settings) if ends is None else ends
    published = database_offsets(rwi.paths().published) if published is None else published
    lag = Lag(ends, published)
    oldest = oldest_pending(settings, lag)
    age = max((now - oldest).total_seconds(), 0.0) if oldest else 0.0
    passed = age <= rwi.freshness_slo_s
    topics = sorted((t, n) for t, n in lag.by_topic().items() if n)
    return Freshness(
        passed=passed,
        metadata={
            "pending_messages": lag.total,
            "oldest_pending_age_s": round(age, 1),
            "slo_s": rwi.freshness_slo_s,
            "evaluated_at": now.isoformat(),
            "pending_by_topic": MetadataValue.md(md.markdown_table(["topic", "messages"], topics)
                                                 if topics else "_nothing pending_"),
        },
        description=None if passed else (
            f"{lag.total} messages are not in the published database; the oldest arrived "
            f"{age:.0f}s ago (SLO {rwi.freshness_slo_s:.0f}s)"),
    )


def freshness_result(rwi: RwiResource) -> AssetCheckResult:
    fresh = evaluate_freshness(rwi)
    return AssetCheckResult(asset_key=PUBLISHED_KEY, check_name=FRESHNESS_CHECK,
                            passed=fresh.passed, metadata=fresh.metadata,
                            severity=AssetCheckSeverity.ERROR, description=fresh.description)


def _published_tables(path: Any) -> list[tuple[str, str, int]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('raw', 'analytics') AND table_type = 'BASE TABLE' "
            "AND table_catalog = current_database() ORDER BY 1, 2").fetchall()
        return [(s, t, md.count(con, s, t)) for s, t in tables]
    finally:
        con.close()


def materialize_published(context: AssetExecutionContext, rwi: RwiResource
                          ) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Copy the checked working database over the published one, atomically."""
    paths = rwi.paths()
    path = warehouse.publish(paths)
    context.log.info("published %s", path)
    tables = _published_tables(path)
    yield MaterializeResult(asset_key=PUBLISHED_KEY, metadata={
        "path": MetadataValue.path(str(path)),
        "bytes": path.stat().st_size,
        "published_at": datetime.now(UTC).isoformat(),
        "analytics_rows": sum(n for s, _, n in tables if s == "analytics"),
        "raw_rows": sum(n for s, _, n in tables if s == "raw"),
        "tables": MetadataValue.md(md.markdown_table(
            ["table", "rows"], [(f"{s}.{t}", n) for s, t, n in tables])),
    })
    yield freshness_result(rwi)


def build_published_asset(upstream: Sequence[AssetKey]) -> Any:
    @multi_asset(
        name="publish_duckdb",
        specs=[AssetSpec(
            PUBLISHED_KEY, deps=list(upstream), group_name="published", kinds={"duckdb"},
            description="`<RWI_DATA_DIR>/rwi.duckdb`: the database SQL users and BI tools open "
            "(read-only). It is replaced atomically by a copy of the working database only "
            "after the blocking checks of the raw and analytics assets passed; a reader that "
            "has it open keeps its snapshot and never blocks a run.",
            metadata={"file": "rwi.duckdb"})],
        check_specs=[AssetCheckSpec(
            FRESHNESS_CHECK, asset=PUBLISHED_KEY,
            description="The oldest Kafka message that is not in the published database "
            "arrived no longer ago than the freshness SLO (60 s by default). Evaluated after "
            "every publish and by the offsets sensor between runs.")],
        pool=DUCKDB_POOL,
    )
    def publish_duckdb(context: AssetExecutionContext, rwi: RwiResource
                       ) -> Iterator[MaterializeResult | AssetCheckResult]:
        yield from materialize_published(context, rwi)

    return publish_duckdb
