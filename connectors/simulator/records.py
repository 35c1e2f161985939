"""The model's state: call legs, agents, recordings, queue visits and IVR runs.

These records are written while a scenario is generated and read twice: by the renderers
(for call context) and by the ground truth. Every instant is an int of epoch microseconds.
A fact is the tuple ``(t_us, seq, kind, leg, data)``: something that happened at ``t_us``
(``seq`` orders facts of one instant in the order they happened).
"""

from __future__ import annotations

from typing import Any

Fact = tuple[int, int, str, "Leg | None", dict[str, Any]]


class Leg:
    """One call leg (one SIP dialog / ``call_id``), as the PBX saw it."""

    __slots__ = (
        "agent_id", "answered", "app_at", "call_id", "callee", "callee_name", "caller",
        "caller_name", "context", "created", "ctx_builds", "ctx_current", "ctx_frag", "ctx_sig",
        "ctx_v1",
        "direction", "end_kind", "ended", "hangup_by", "hangup_reason", "holds", "idx",
        "ivr_runs", "queue_visits", "recordings", "reparent_at", "ringing", "root_call_id",
        "session_id", "sip_headers", "sip_status", "text_cache", "transfers", "trunk", "uas",
        "uuid",
    )

    def __init__(self, idx: int, call_id: str, direction: str, caller: str, callee: str) -> None:
        self.idx = idx
        self.call_id = call_id
        self.direction = direction
        self.caller = caller
        self.callee = callee
        self.caller_name: str | None = None
        self.callee_name: str | None = None
        self.trunk: str | None = None
        self.context = "default"
        self.uas = False
        self.uuid: str | None = None
        self.session_id = call_id
        self.root_call_id = call_id
        self.reparent_at: int | None = None  # first event carrying a changed session_id
        self.sip_headers: dict[str, str] = {}
        self.created = 0
        self.ringing: int | None = None
        self.answered: int | None = None
        self.ended: int | None = None
        self.end_kind: str | None = None  # hangup | busy | no_answer
        self.hangup_reason: str | None = None
        self.hangup_by: str | None = None
        self.sip_status: int | None = None
        self.holds: list[list[int | None]] = []
        self.transfers: list[int] = []
        self.queue_visits: list[QueueVisit] = []
        self.ivr_runs: list[IvrRun] = []
        self.recordings: list[Recording] = []
        self.agent_id: str | None = None
        self.app_at: int | None = None
        self.ctx_current: dict[str, Any] = {}
        self.ctx_v1: dict[str, Any] = {}
        # Renderer caches of the encoded context (rebuilt when the context changes): its
        # sorted keys, their encoded values and the templates compiled for those keys.
        self.ctx_frag: tuple[str, ...] | None = None
        self.ctx_sig: tuple[str, ...] = ()
        self.ctx_builds: dict[str, Any] = {}
        self.text_cache: dict[frozenset[str], str] = {}


class Agent:
    """A contact-centre agent: identity, extension, queues and state machine."""

    __slots__ = (
        "agent_id", "extension", "free_at", "name", "queues", "since", "status", "team_id",
        "transitions", "uri",
    )

    def __init__(self, agent_id: str, name: str, extension: str, team_id: str) -> None:
        self.agent_id = agent_id
        self.name = name
        self.extension = extension
        self.uri = f"sip:{extension}@pbx.local"
        self.team_id = team_id
        self.queues: list[str] = []
        self.status = "offline"
        self.since = 0
        self.free_at = 0
        # (t_us, from, to, call_id, reason_code)
        self.transitions: list[tuple[int, str, str, str | None, str | None]] = []


class Recording:
    """One recording of a leg, from start (or automatic start) to upload."""

    __slots__ = (
        "agent_id", "agent_name", "auto", "call_type", "download_url", "duration_secs",
        "end_at", "failed", "file_size", "filename", "leg", "meta_at", "meta_filename",
        "pauses", "queue_id", "rec_id", "started", "stopped", "upload_time",
    )

    def __init__(self, leg: Leg, rec_id: str, started: int, auto: bool) -> None:
        self.leg = leg
        self.rec_id = rec_id
        self.started = started
        self.auto = auto
        self.stopped: int | None = None
        self.failed: int | None = None
        self.pauses: list[list[int | None]] = []
        self.duration_secs = 0
        self.file_size = 0
        self.filename = ""
        self.meta_filename = ""
        self.download_url: str | None = None
        self.meta_at: int | None = None
        self.end_at: int | None = None
        self.upload_time: int | None = None
        self.agent_id: str | None = None
        self.agent_name: str | None = None
        self.queue_id: str | None = None
        self.call_type = leg.direction


class QueueVisit:
    """One stay of a call in one queue: join, offers, and how it left."""

    __slots__ = ("agent_id", "connected", "joined", "left", "offers", "queue_id", "result")

    def __init__(self, queue_id: str, joined: int) -> None:
        self.queue_id = queue_id
        self.joined = joined
        self.left: int | None = None
        self.result: str | None = None  # connected | abandoned | timeout | overflow | no_agent
        self.connected: int | None = None
        self.agent_id: str | None = None
        self.offers: list[int] = []


class IvrVisit:
    """One visit of one IVR node."""

    __slots__ = (
        "digit", "entered", "exited", "next_node_id", "node_id", "node_name", "node_type",
        "result_value",
    )

    def __init__(self, node_id: str, node_name: str, node_type: str, entered: int) -> None:
        self.node_id = node_id
        self.node_name = node_name
        self.node_type = node_type
        self.entered = entered
        self.exited: int | None = None
        self.result_value: str | None = None
        self.next_node_id: str | None = None
        self.digit: str | None = None


class IvrRun:
    """One traversal of one IVR application by one call."""

    __slots__ = (
        "abandoned", "app_id", "completed", "final_result", "final_target", "kind", "started",
        "visits",
    )

    def __init__(self, app_id: str, kind: str, started: int) -> None:
        self.app_id = app_id
        self.kind = kind  # tree | step
        self.started = started
        self.visits: list[IvrVisit] = []
        self.completed: int | None = None
        self.final_result: str | None = None
        self.final_target: str | None = None
        self.abandoned = False
