"""Checks on the analytics tables: no key twice (blocking), calls left open (a warning)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import duckdb
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, MetadataValue

from dagster_project import metadata as md
from dagster_project.resources import RwiResource
from pipelines.analytics.source import existing_relations, relation_columns
from pipelines.warehouse import quote

DUPLICATE_CHECK = "no_duplicate_keys"
OPEN_CALLS_CHECK = "calls_ended_within_limit"

# The grain of each table: no two rows may share these values. A delivery counted twice, or
# an incremental run that failed to replace a slice, shows up as a repeated key.
GRAINS: dict[str, tuple[str, ...]] = {
    "calls": ("call_id",),
    "sessions": ("session_id",),
    "recordings": ("call_id", "recording_index"),
    "ivr_node_visits": ("call_id", "call_visit_index"),
    "ivr_paths": ("call_id", "ivr_index"),
    "queue_calls": ("call_id", "queue_id", "joined_at"),
    "agent_states": ("pbx", "agent_id", "state_index"),
    "conferences": ("conf_id",),
    "conference_members": ("conf_id", "call_id", "stay_index"),
    "daily": ("day",),
    "daily_queues": ("day", "queue_id"),
}


def _key(table: str) -> AssetKey:
    return AssetKey(["analytics", table])


def analytics_check_specs(tables: Iterable[str]) -> list[AssetCheckSpec]:
    specs = []
    for table in tables:
        grain = GRAINS.get(table)
        what = f"({', '.join(grain)})" if grain else "the whole row"
        specs.append(AssetCheckSpec(
            DUPLICATE_CHECK, asset=_key(table), blocking=True,
            description=f"No two rows of analytics.{table} share {what}: duplicated deliveries "
            "(same event id) count once, and an incremental run replaced its slice whole."))
    specs.append(AssetCheckSpec(
        OPEN_CALLS_CHECK, asset=_key("calls"), blocking=False,
        description="Warns about call legs still open (no end event) long after they were "
        "created: a lost hangup, or a call that really is that long."))
    return specs


def _duplicates(con: duckdb.DuckDBPyConnection, table: str) -> AssetCheckResult:
    rel = f"analytics.{quote(table)}"
    grain = GRAINS.get(table)
    if grain and not set(grain) <= relation_columns(con, "analytics", table):
        grain = None  # the model changed shape: fall back to whole-row duplicates
    if grain:
        cols = ", ".join(quote(c) for c in grain)
        dupes = con.execute(
            f"SELECT {cols}, count(*) AS copies FROM {rel} GROUP BY ALL HAVING count(*) > 1 "
            f"ORDER BY copies DESC LIMIT 10").fetchall()
        extra_row = con.execute(
            f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {rel} "
            f"GROUP BY {cols} HAVING count(*) > 1)").fetchone()
        columns = [*grain, "copies"]
    else:
        dupes = []
        extra_row = con.execute(
            f"SELECT (SELECT count(*) FROM {rel}) - "
            f"(SELECT count(*) FROM (SELECT DISTINCT * FROM {rel}))").fetchone()
        columns = []
    extra = int(extra_row[0]) if extra_row else 0
    passed = extra == 0
    return AssetCheckResult(
        asset_key=_key(table), check_name=DUPLICATE_CHECK, passed=passed,
        metadata={"extra_rows": extra, "key": ", ".join(grain) if grain else "(whole row)",
                  "examples": MetadataValue.md(md.markdown_table(columns, dupes))
                  if dupes else MetadataValue.md("_none_")},
        description=None if passed else f"{extra} rows of analytics.{table} repeat a key")


def _open_calls(con: duckdb.DuckDBPyConnection, rwi: RwiResource,
                now: datetime) -> AssetCheckResult:
    cutoff = now - timedelta(hours=rwi.open_call_max_hours)
    row = con.execute("SELECT count(*) FROM analytics.calls WHERE NOT complete "
                      "AND created_at < ?", [cutoff]).fetchone()
    stale = int(row[0]) if row else 0
    examples = md.query_markdown(con, """
        SELECT call_id, created_at, direction, caller_name, callee_name, queue_id, agent_id
        FROM analytics.calls WHERE NOT complete AND created_at < ?
        ORDER BY created_at LIMIT 10""", [cutoff])
    return AssetCheckResult(
        asset_key=_key("calls"), check_name=OPEN_CALLS_CHECK, passed=stale == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={"open_calls": stale, "max_hours": rwi.open_call_max_hours,
                  "created_before": cutoff.isoformat(), "oldest": examples},
        description=None if stale == 0 else (
            f"{stale} call legs created before {cutoff:%Y-%m-%d %H:%M} UTC have not ended"))


def analytics_checks(con: duckdb.DuckDBPyConnection, rwi: RwiResource, now: datetime,
                     tables: Iterable[str]) -> list[AssetCheckResult]:
    """The result of every analytics check over the working database."""
    present = existing_relations(con, "analytics")
    out = [_duplicates(con, t) for t in tables if t in present]
    if "calls" in present:
        out.append(_open_calls(con, rwi, now))
    return out
