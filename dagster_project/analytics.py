"""The analytics tables as day-partitioned assets, built incrementally from the raw layer.

Two ways to run the same multi-asset:

- without a partition (the refresh job, ``rwi-etl run``): recompute the keys named by the raw
  rows loaded since the last build, and record a materialization of every day partition
  whose rows that changed;
- for a range of days (a backfill): recompute every key named by events dated in the range,
  from the key's complete history.
"""


from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    BackfillPolicy,
    Config,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)
from pydantic import Field

from dagster_project import checks
from dagster_project import metadata as md
from dagster_project.progress import (
    Plan,
    all_days,
    call_days,
    ensure_progress,
    plan_days,
    plan_incremental,
    record_progress,
)
from dagster_project.raw import DUCKDB_POOL, raw_key
from dagster_project.resources import RwiResource
from pipelines import warehouse
from pipelines.analytics import BuildResult, build_analytics
from pipelines.analytics.dictionary import TABLES
from pipelines.analytics.models import MODELS
from pipelines.analytics.source import MODEL_CATEGORIES

ANALYTICS_GROUP = "analytics"
PARTITIONS_START = "2024-01-01"
ANALYTICS_PARTITIONS = DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1,
                                                 timezone="UTC")
ANALYTICS_TABLES: tuple[str, ...] = tuple(m.name for m in MODELS)


def analytics_key(table: str) -> AssetKey:
    return AssetKey(["analytics", table])


class AnalyticsConfig(Config):
    full_rebuild: bool = Field(
        default=False, description="Rebuild every analytics table from the whole raw layer.")


def analytics_specs() -> list[AssetSpec]:
    deps = [raw_key(c) for c in MODEL_CATEGORIES]
    return [
        AssetSpec(analytics_key(t), deps=deps, group_name=ANALYTICS_GROUP, kinds={"duckdb"},
                  description=TABLES.get(t, (f"`analytics.{t}`", {}))[0],
                  metadata={"duckdb_table": f"analytics.{t}"})
        for t in ANALYTICS_TABLES
    ]


def _preview(con: Any, table: str) -> MetadataValue:
    if table == "calls":
        return md.query_markdown(con, """
            SELECT call_id, direction, caller_name, callee_name, created_at, outcome,
                   talk_ms, queue_id, agent_id
            FROM analytics.calls ORDER BY created_at DESC NULLS LAST, call_id LIMIT 10""")
    if table.startswith("daily"):
        return md.query_markdown(con, f"""
            SELECT * EXCLUDE (day), day FROM analytics.{warehouse.quote(table)}
            ORDER BY day DESC LIMIT 10""")
    columns = [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'analytics' "
        "AND table_name = ? AND table_catalog = current_database() ORDER BY ordinal_position "
        "LIMIT 8", [table]).fetchall()]
    return md.query_markdown(con, "SELECT " + ", ".join(warehouse.quote(c) for c in columns)
                             + f" FROM analytics.{warehouse.quote(table)} LIMIT 10")


def _call_charts(con: Any) -> dict[str, Any]:
    """Calls per hour over the last day of data, outcomes, and a few rates."""
    hours = con.execute("""
        SELECT strftime(date_trunc('hour', created_at), '%Y-%m-%d %H:00') AS hour, count(*)
        FROM analytics.calls
        WHERE created_at > (SELECT max(created_at) FROM analytics.calls) - INTERVAL 24 HOUR
        GROUP BY 1 ORDER BY 1""").fetchall()
    outcomes = con.execute("""
        SELECT outcome, count(*) AS n FROM analytics.calls GROUP BY 1
        ORDER BY n DESC, outcome""").fetchall()
    ended = con.execute("""
        SELECT count(*) FILTER (complete), count(*) FILTER (NOT complete),
               count(*) FILTER (complete AND outcome = 'answered')
        FROM analytics.calls""").fetchone()
    done, open_, answered = (int(v or 0) for v in (ended or (0, 0, 0)))
    return {
        "calls_per_hour": MetadataValue.md(md.bar_chart([(h, n) for h, n in hours])),
        "outcomes": MetadataValue.md(md.bar_chart([(o, n) for o, n in outcomes])),
        "calls_ended": done,
        "calls_in_progress": open_,
        "answer_rate": round(answered / done, 4) if done else 0.0,
    }


def _table_metadata(con: Any, table: str, result: BuildResult, plan: Plan,
                    days: list[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "dagster/row_count": md.count(con, "analytics", table),
        "build_mode": result.mode,
        "build_reason": plan.reason,
        "build_seconds": round(result.model_seconds.get(table, 0.0), 3),
        "days_rebuilt": ", ".join(days[:14]) + (" …" if len(days) > 14 else ""),
        "dagster/column_schema": md.column_schema(con, "analytics", table,
                                                  TABLES.get(table, ("", {}))[1]),
        "preview": _preview(con, table),
    }
    if plan.touched is not None:
        meta["events_scanned"] = plan.new_rows
        meta["calls_recomputed"] = len(plan.touched.call_ids)
    if table == "calls":
        meta.update(_call_charts(con))
    return meta


def _changed_days(con: Any, plan: Plan) -> set[date]:
    if plan.touched is None:
        return all_days(con) | set(plan.event_days)
    return call_days(con, plan.touched.call_ids) | set(plan.event_days)


def _partition_keys(days: set[date]) -> list[str]:
    keys = sorted(d.isoformat() for d in days)
    return [k for k in keys if ANALYTICS_PARTITIONS.has_partition_key(k)]


def materialize_analytics(
    context: AssetExecutionContext, config: AnalyticsConfig, rwi: RwiResource
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Build the analytics tables (see the module doc), report them and check them."""
    partitioned = context.has_partition_key or context.has_partition_key_range
    now = datetime.now(UTC)
    day_events: list[str] = []
    results: list[MaterializeResult | AssetCheckResult] = []
    with warehouse.open_work(rwi.paths()) as con:
        ensure_progress(con)
        if partitioned:
            window = context.partition_key_range
            plan = plan_days(con, date.fromisoformat(window.start),
                             date.fromisoformat(window.end))
            result = build_analytics(con, touched=plan.touched)
            days = list(context.partition_keys)
        else:
            plan = plan_incremental(con, rwi.full_rebuild_rows, force_full=config.full_rebuild)
            result = build_analytics(con, touched=plan.touched)
            record_progress(con, plan.loaded, now)
            days = _partition_keys(_changed_days(con, plan))
            day_events = days
        context.log.info("analytics %s build (%s): %d new raw events, days %s", result.mode,
                         plan.reason, plan.new_rows, days[:14])
        for table in ANALYTICS_TABLES:
            results.append(MaterializeResult(
                asset_key=analytics_key(table),
                metadata=_table_metadata(con, table, result, plan, days)))
        results.extend(checks.analytics_checks(con, rwi, now, ANALYTICS_TABLES))
    # A run without a partition still rewrites the rows of particular days: record those.
    for table in ANALYTICS_TABLES:
        for day in day_events:
            context.log_event(AssetMaterialization(
                asset_key=analytics_key(table), partition=day,
                metadata={"build_mode": result.mode, "run_kind": "incremental refresh"}))
    yield from results


def build_analytics_assets() -> Any:
    @multi_asset(
        name="build_analytics_tables",
        specs=analytics_specs(),
        check_specs=checks.analytics_check_specs(ANALYTICS_TABLES),
        partitions_def=ANALYTICS_PARTITIONS,
        backfill_policy=BackfillPolicy.single_run(),
        pool=DUCKDB_POOL,
        description="Builds the analytics tables in the working DuckDB database from "
        "staging.* (one row per event id). A refresh recomputes only the calls, sessions, "
        "agents, conferences and days that newly landed events name; a backfill of days "
        "recomputes everything the events dated those days name.",
    )
    def build_analytics_tables(
        context: AssetExecutionContext, config: AnalyticsConfig, rwi: RwiResource
    ) -> Iterator[MaterializeResult | AssetCheckResult]:
        yield from materialize_analytics(context, config, rwi)

    return build_analytics_tables
