"""What an incremental run must recompute: the calls, agents and conferences new events touch.

A call row depends only on events that name the call (its own ``call_id``, a bridge's
``leg_a``/``leg_b``, a supervisor's target, a conference member id), so recomputing every
touched call from all of its events — old and new — gives the row a full rebuild gives.
Sessions and days are derived from touched calls when the run applies them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from pipelines.analytics.source import existing_relations, ident, qualified, relation_columns

# Columns that name a call, per category (besides call_id).
_CALL_REFS: dict[str, tuple[str, ...]] = {
    "call": ("call_id", "leg_a", "leg_b"),
    "transfer": ("call_id",),
    "media": ("call_id",),
    "recording": ("call_id",),
    "ivr": ("call_id",),
    "queue": ("call_id",),
    "conference": ("call_id", "old_call_id", "new_call_id", "host_call_id"),
    "supervisor": ("target_call_id", "supervisor_call_id"),
}


@dataclass(frozen=True, slots=True)
class Touched:
    """Keys whose rows an incremental run recomputes."""

    call_ids: frozenset[str] = field(default_factory=frozenset)
    agent_ids: frozenset[str] = field(default_factory=frozenset)
    conf_ids: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(
        cls,
        call_ids: Iterable[str] = (),
        agent_ids: Iterable[str] = (),
        conf_ids: Iterable[str] = (),
    ) -> Touched:
        return cls(frozenset(call_ids), frozenset(agent_ids), frozenset(conf_ids))

    def __or__(self, other: Touched) -> Touched:
        return Touched(
            self.call_ids | other.call_ids,
            self.agent_ids | other.agent_ids,
            self.conf_ids | other.conf_ids,
        )

    def __bool__(self) -> bool:
        return bool(self.call_ids or self.agent_ids or self.conf_ids)


def touched_since(
    con: duckdb.DuckDBPyConnection, source_schema: str, *, received_after: datetime
) -> Touched:
    """Keys named by events received after ``received_after`` (the last run's watermark)."""
    return _touched(con, source_schema, "received_at > ?", [received_after])


def touched_by_events(
    con: duckdb.DuckDBPyConnection, source_schema: str, event_ids: Iterable[str]
) -> Touched:
    """Keys named by the given events (e.g. the ones a compaction run just landed)."""
    ids = sorted(set(event_ids))
    if not ids:
        return Touched()
    return _touched(con, source_schema, "event_id IN (SELECT unnest(?))", [ids])


def _touched(
    con: duckdb.DuckDBPyConnection, schema: str, where: str, params: list[object]
) -> Touched:
    present = existing_relations(con, schema)
    calls: set[str] = set()
    agents: set[str] = set()
    confs: set[str] = set()
    for category, refs in _CALL_REFS.items():
        if category not in present:
            continue
        cols = relation_columns(con, schema, category)
        wanted = [c for c in refs if c in cols]
        if not wanted:
            continue
        rel = f"{qualified(con, schema)}.{ident(category)}"
        union = " UNION ".join(
            f"SELECT {ident(c)} AS k FROM {rel} WHERE {where} AND {ident(c)} IS NOT NULL"
            for c in wanted
        )
        calls.update(r[0] for r in con.execute(union, params * len(wanted)).fetchall())
    if "agent" in present:
        rel = f"{qualified(con, schema)}.agent"
        agents.update(
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT agent_id FROM {rel} WHERE {where} AND agent_id IS NOT NULL",
                params,
            ).fetchall()
        )
    if "conference" in present:
        rel = f"{qualified(con, schema)}.conference"
        confs.update(
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT conf_id FROM {rel} WHERE {where} AND conf_id IS NOT NULL",
                params,
            ).fetchall()
        )
    return Touched.of(calls, agents, confs)
