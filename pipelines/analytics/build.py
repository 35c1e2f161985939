"""Full and incremental builds of the ``analytics`` tables from the raw per-category relations.

A full build replaces every table in one transaction. An incremental build recomputes only
the rows keyed by what new events touch (calls, the sessions and days those calls belong to
before and after, agents, conferences): each model runs over the touched keys' complete
event history, and its slice is deleted then inserted, all in one transaction, so the result
equals a full rebuild and a reader never sees a half-applied run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import duckdb

from pipelines.analytics.models import MODELS, Model
from pipelines.analytics.scope import Touched
from pipelines.analytics.source import (
    MODEL_CATEGORIES,
    existing_relations,
    ident,
    qualified,
    select_contract,
)

log = logging.getLogger(__name__)

DEFAULT_SERVICE_LEVEL_S = 20
_SCOPE_TABLES = {
    "call": ("rwi_scope_calls", "call_id"),
    "agent": ("rwi_scope_agents", "agent_id"),
    "conf": ("rwi_scope_confs", "conf_id"),
    "session": ("rwi_scope_sessions", "session_id"),
    "day": ("rwi_scope_days", "day"),
}


@dataclass(frozen=True, slots=True)
class BuildResult:
    """What one build did."""

    mode: str  # full | incremental | noop
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    model_seconds: dict[str, float] = field(default_factory=dict)


def build_analytics(
    con: duckdb.DuckDBPyConnection,
    source_schema: str = "staging",
    target_schema: str = "analytics",
    *,
    touched: Touched | None = None,
    service_level_s: int = DEFAULT_SERVICE_LEVEL_S,
) -> BuildResult:
    """Build the analytics tables: all of them (``touched=None``), or the slices ``touched``
    names. An incremental run on a target that does not exist yet becomes a full build."""
    started = time.perf_counter()
    tgt = qualified(con, target_schema)
    ident(source_schema)
    missing = {m.name for m in MODELS} - existing_relations(con, target_schema)
    full = touched is None or bool(missing)
    if not full and touched is not None and not touched:
        return BuildResult("noop", {}, 0.0)
    _prepare(con, source_schema, touched if not full else None, service_level_s)
    # Row order of the tables is meaningless; letting DuckDB drop it makes big builds cheaper.
    row = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()
    preserve = bool(row[0]) if row else True
    con.execute("SET preserve_insertion_order = false")
    rows: dict[str, int] = {}
    timings: dict[str, float] = {}
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {tgt}")
        if not full:
            _capture_old_keys(con, tgt)
        for model in MODELS:
            if not full:
                _before_model(con, tgt, model)
            began = time.perf_counter()
            rows[model.name] = _run_model(con, tgt, model, full)
            timings[model.name] = time.perf_counter() - began
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.execute(f"SET preserve_insertion_order = {'true' if preserve else 'false'}")
        _cleanup(con)
    mode = "full" if full else "incremental"
    seconds = time.perf_counter() - started
    log.info("analytics %s build into %s in %.2fs: %s", mode, target_schema, seconds, rows)
    return BuildResult(mode, rows, seconds, timings)


def _prepare(
    con: duckdb.DuckDBPyConnection,
    source_schema: str,
    touched: Touched | None,
    service_level_s: int,
) -> None:
    """Temp scope tables and one event view per category over the source (scoped or not)."""
    for table, col in _SCOPE_TABLES.values():
        kind = "DATE" if col == "day" else "VARCHAR"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} ({col} {kind} PRIMARY KEY)")
    # Durations are floor((end - start) in µs / 1000), negative ones included.
    con.execute(
        "CREATE OR REPLACE TEMP MACRO rwi_us_to_ms(us) AS CAST(fdiv(us, 1000) AS BIGINT)"
    )
    con.execute(
        "CREATE OR REPLACE TEMP MACRO rwi_ms(start_at, end_at) AS "
        "rwi_us_to_ms(epoch_us(end_at) - epoch_us(start_at))"
    )
    con.execute("CREATE OR REPLACE TEMP TABLE rwi_params (service_level_ms BIGINT)")
    con.execute("INSERT INTO rwi_params VALUES (?)", [service_level_s * 1000])
    if touched is not None:
        for values, (table, _) in (
            (touched.call_ids, _SCOPE_TABLES["call"]),
            (touched.agent_ids, _SCOPE_TABLES["agent"]),
            (touched.conf_ids, _SCOPE_TABLES["conf"]),
        ):
            if values:
                con.execute(f"INSERT INTO {table} SELECT DISTINCT unnest(?)", [sorted(values)])
    for category in MODEL_CATEGORIES:
        base = select_contract(con, source_schema, category)
        where = "" if touched is None else f" WHERE {_scope_predicate(category)}"
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW rwi_ev_{category} AS SELECT * FROM ({base}){where}"
        )
    # The logical call of each leg (the last session id its call events carry), its 1.0
    # UUID and direction: several models need them.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE rwi_call_info AS "
        "SELECT call_id, arg_max(session_id, event_time) AS session_id, "
        "arg_min(uuid, event_time) AS uuid, arg_min(direction, event_time) AS direction "
        "FROM rwi_ev_call WHERE call_id IS NOT NULL AND event_type <> 'call_bridged' "
        "GROUP BY call_id"
    )


def _scope_predicate(category: str) -> str:
    calls = "(SELECT call_id FROM rwi_scope_calls)"
    if category == "call":
        return f"(call_id IN {calls} OR leg_a IN {calls} OR leg_b IN {calls})"
    if category == "agent":
        return "agent_id IN (SELECT agent_id FROM rwi_scope_agents)"
    if category == "conference":
        # The calls model reads a member's joins by call; the room models filter by room.
        return f"(conf_id IN (SELECT conf_id FROM rwi_scope_confs) OR call_id IN {calls})"
    return f"call_id IN {calls}"


def _capture_old_keys(con: duckdb.DuckDBPyConnection, tgt: str) -> None:
    """Sessions and days the touched calls belonged to before this run."""
    con.execute(
        f"INSERT OR IGNORE INTO rwi_scope_sessions SELECT DISTINCT session_id FROM {tgt}.calls "
        "WHERE call_id IN (SELECT call_id FROM rwi_scope_calls) AND session_id IS NOT NULL"
    )
    _add_days(con, tgt)


def _add_days(con: duckdb.DuckDBPyConnection, tgt: str) -> None:
    con.execute(
        f"INSERT OR IGNORE INTO rwi_scope_days SELECT DISTINCT day FROM {tgt}.calls "
        "WHERE call_id IN (SELECT call_id FROM rwi_scope_calls) AND day IS NOT NULL"
    )


def _before_model(con: duckdb.DuckDBPyConnection, tgt: str, model: Model) -> None:
    # Sessions and days are known only once the calls slice has been rebuilt.
    if model.key == "session":
        con.execute(
            f"INSERT OR IGNORE INTO rwi_scope_sessions SELECT DISTINCT session_id "
            f"FROM {tgt}.calls WHERE call_id IN (SELECT call_id FROM rwi_scope_calls) "
            "AND session_id IS NOT NULL"
        )
    if model.key == "day":
        _add_days(con, tgt)


def _run_model(con: duckdb.DuckDBPyConnection, tgt: str, model: Model, full: bool) -> int:
    names = {f"ev_{c}": f"rwi_ev_{c}" for c in MODEL_CATEGORIES}
    names["tgt"] = tgt
    for key, (table, col) in _SCOPE_TABLES.items():
        names[f"all_{key}s"] = "TRUE" if full else "FALSE"
        names[f"scope_{key}s"] = f"(SELECT {col} FROM {table})"
    sql = model.sql.format_map(names)
    table = f"{tgt}.{ident(model.name)}"
    if full:
        con.execute(f"CREATE OR REPLACE TABLE {table} AS {sql}")
    else:
        scope_table, col = _SCOPE_TABLES[model.key]
        con.execute(
            f"DELETE FROM {table} WHERE {model.key_column} IN (SELECT {col} FROM {scope_table})"
        )
        con.execute(f"INSERT INTO {table} BY NAME {sql}")
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _cleanup(con: duckdb.DuckDBPyConnection) -> None:
    for category in MODEL_CATEGORIES:
        con.execute(f"DROP VIEW IF EXISTS rwi_ev_{category}")
    for table, _ in _SCOPE_TABLES.values():
        con.execute(f"DROP TABLE IF EXISTS {table}")
    con.execute("DROP TABLE IF EXISTS rwi_params")
    con.execute("DROP TABLE IF EXISTS rwi_call_info")
    con.execute("DROP MACRO IF EXISTS rwi_ms")
    con.execute("DROP MACRO IF EXISTS rwi_us_to_ms")
