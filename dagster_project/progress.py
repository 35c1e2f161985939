"""Which raw rows the analytics tables already reflect, and what a run must recompute.

``meta.analytics_progress`` holds, per topic-partition, the raw offset up to which the
analytics tables were built. It is written after the build has committed, so a crash in
between only makes the next run recompute the same keys again — recomputing a key from its
complete history is idempotent — and never skips a row.

A day partition is rebuilt from the events *dated* that day: every call, agent and
conference they name is recomputed from its complete event history (which may span other
days), exactly as a full rebuild would compute it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

import duckdb
import pyarrow as pa

from pipelines.analytics import Touched, touched_by_events
from pipelines.analytics.source import MODEL_CATEGORIES, existing_relations
from pipelines.warehouse import quote

Offsets = dict[tuple[str, int], int]


@dataclass(frozen=True, slots=True)
class Plan:
    """What an analytics run recomputes: everything (``touched`` None) or some keys."""

    touched: Touched | None
    reason: str
    new_rows: int = 0  # events whose keys are recomputed (new ones, or those of the days)
    event_days: frozenset[date] = field(default_factory=frozenset)
    loaded: Offsets = field(default_factory=dict)


def ensure_progress(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS meta")
    con.execute("""CREATE TABLE IF NOT EXISTS meta.analytics_progress (
        topic VARCHAR, "partition" INTEGER, next_offset BIGINT, built_at TIMESTAMPTZ)""")


def _offsets(con: duckdb.DuckDBPyConnection, table: str) -> Offsets:
    if table.split(".")[1] not in existing_relations(con, "meta"):
        return {}
    rows = con.execute(f'SELECT topic, "partition", next_offset FROM {table}').fetchall()
    return {(str(t), int(p)): int(n) for t, p, n in rows}


def loaded_offsets(con: duckdb.DuckDBPyConnection) -> Offsets:
    """Raw offsets loaded into ``raw.*`` (``meta.offsets``)."""
    return _offsets(con, "meta.offsets")


def built_offsets(con: duckdb.DuckDBPyConnection) -> Offsets:
    return _offsets(con, "meta.analytics_progress")


def record_progress(con: duckdb.DuckDBPyConnection, offsets: Offsets, now: datetime) -> None:
    """Remember that the analytics tables reflect raw rows below ``offsets``."""
    ensure_progress(con)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM meta.analytics_progress")
        if offsets:
            con.executemany("INSERT INTO meta.analytics_progress VALUES (?, ?, ?, ?)",
                            [[t, p, n, now] for (t, p), n in sorted(offsets.items())])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _raw_categories(con: duckdb.DuckDBPyConnection) -> list[str]:
    present = existing_relations(con, "raw")
    return [c for c in MODEL_CATEGORIES if c in present]


def _new_events(con: duckdb.DuckDBPyConnection, built: Offsets) -> tuple[list[str], set[date]]:
    """Event ids and event dates of raw rows at or past the built offsets."""
    marks = pa.table({
        "topic": pa.array([t for t, _ in built], pa.string()),
        "part": pa.array([p for _, p in built], pa.int32()),
        "next_offset": pa.array(list(built.values()), pa.int64()),
    })
    con.register("_rwi_built", marks)
    ids: set[str] = set()
    days: set[date] = set()
    try:
        for category in _raw_categories(con):
            rows = con.execute(
                f"""SELECT DISTINCT r.event_id, r.event_date FROM raw.{quote(category)} AS r
                    LEFT JOIN _rwi_built AS b ON r._topic = b.topic AND r._partition = b.part
                    WHERE r._offset >= coalesce(b.next_offset, 0)""").fetchall()
            ids.update(str(i) for i, _ in rows if i is not None)
            days.update(d for _, d in rows if d is not None)
    finally:
        con.unregister("_rwi_built")
    return sorted(ids), days


def plan_incremental(con: duckdb.DuckDBPyConnection, full_rebuild_rows: int,
                     *, force_full: bool = False) -> Plan:
    """The keys named by raw rows loaded since the last build (or a full build)."""
    loaded = loaded_offsets(con)
    built = built_offsets(con)
    if force_full:
        return Plan(None, "full rebuild requested", loaded=loaded)
    if not built:
        return Plan(None, "first build", loaded=loaded)
    if any(n > loaded.get(tp, 0) for tp, n in built.items()):
        return Plan(None, "the raw layer was reloaded below the built offsets", loaded=loaded)
    ids, days = _new_events(con, built)
    if len(ids) > full_rebuild_rows:
        return Plan(None, f"{len(ids)} new events (more than {full_rebuild_rows})",
                    new_rows=len(ids), event_days=frozenset(days), loaded=loaded)
    touched = touched_by_events(con, "staging", ids) if ids else Touched()
    return Plan(touched, "incremental", new_rows=len(ids), event_days=frozenset(days),
                loaded=loaded)


def plan_days(con: duckdb.DuckDBPyConnection, first: date, last: date) -> Plan:
    """The keys that rows of the days ``first..last`` depend on."""
    ids: set[str] = set()
    for category in _raw_categories(con):
        rows = con.execute(
            f"SELECT DISTINCT event_id FROM raw.{quote(category)} "
            "WHERE event_date BETWEEN ? AND ?", [first, last]).fetchall()
        ids.update(str(r[0]) for r in rows if r[0] is not None)
    touched = touched_by_events(con, "staging", sorted(ids)) if ids else Touched()
    if "calls" in existing_relations(con, "analytics"):
        # Rows already filed under those days, should their events have gone since.
        calls = con.execute("SELECT call_id FROM analytics.calls WHERE day BETWEEN ? AND ?",
                            [first, last]).fetchall()
        touched = touched | Touched.of(call_ids=(str(r[0]) for r in calls))
    return Plan(touched, f"days {first}..{last}", new_rows=len(ids))


def call_days(con: duckdb.DuckDBPyConnection, call_ids: Iterable[str]) -> set[date]:
    """The days (``analytics.calls.day``) the given calls are filed under."""
    ids = sorted(set(call_ids))
    if not ids or "calls" not in existing_relations(con, "analytics"):
        return set()
    rows = con.execute("SELECT DISTINCT day FROM analytics.calls "
                       "WHERE call_id IN (SELECT unnest(?)) AND day IS NOT NULL", [ids]).fetchall()
    return {r[0] for r in rows}


def all_days(con: duckdb.DuckDBPyConnection) -> set[date]:
    if "calls" not in existing_relations(con, "analytics"):
        return set()
    return {r[0] for r in con.execute(
        "SELECT DISTINCT day FROM analytics.calls WHERE day IS NOT NULL").fetchall()}
