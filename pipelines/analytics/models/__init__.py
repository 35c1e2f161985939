"""The analytics models, in build order. Each is one SELECT over the scoped event views
(``{ev_<category>}``) and earlier models (``{tgt}.<table>``); placeholders are identifiers
and constant booleans only, never data."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.analytics.models import agents, calls, conferences, daily, ivr, queues, recordings


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    sql: str
    key: str  # call | session | agent | conf | day: the slice an incremental run replaces
    key_column: str


MODELS: tuple[Model, ...] = (
    Model("recordings", recordings.RECORDINGS, "call", "call_id"),
    Model("ivr_node_visits", ivr.NODE_VISITS, "call", "call_id"),
    Model("ivr_paths", ivr.PATHS, "call", "call_id"),
    Model("queue_calls", queues.QUEUE_CALLS, "call", "call_id"),
    Model("calls", calls.CALLS, "call", "call_id"),
    Model("sessions", calls.SESSIONS, "session", "session_id"),
    Model("agent_states", agents.AGENT_STATES, "agent", "agent_id"),
    Model("conferences", conferences.CONFERENCES, "conf", "conf_id"),
    Model("conference_members", conferences.MEMBERS, "conf", "conf_id"),
    Model("daily", daily.DAILY, "day", "day"),
    Model("daily_queues", daily.DAILY_QUEUES, "day", "day"),
)
