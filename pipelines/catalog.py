"""The event catalog: every RWI event type, its category, topic, key and dialects.

This table is the single place that maps an event type to a category; topics, Avro
schemas, Dagster assets and the simulator's coverage checks are all derived from it.
Sources: the RWI events reference 1.0 (its section 7 table plus ``record_end``) and
RustPBX's ``src/rwi/event.rs`` at the snapshot described in ``rwi-wire-protocol.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Dialect(StrEnum):
    V1_0 = "v1.0"
    CURRENT = "current"


class Dispatch(StrEnum):
    OWNER = "owner"
    FAN_OUT = "fan_out"
    BROADCAST = "broadcast"
    MULTI_OWNER = "multi_owner"  # sent to several owners: delivered 2-3 times by design
    WEBHOOK_ONLY = "webhook_only"


CATEGORIES: tuple[str, ...] = (
    "call",
    "transfer",
    "media",
    "recording",
    "ivr",
    "queue",
    "agent",
    "extension",
    "metadata",
    "conference",
    "supervisor",
    "originate",
    "sip",
    "session",
    "transcript",
    "unknown",
)

SCHEMA_MAJOR = 1
DEAD_LETTER_TOPIC_SUFFIX = "deadletter.v1"

# Avro record name per category (schemas/rwi.etl.<Name>.avsc).
CATEGORY_SCHEMA: dict[str, str] = {
    "call": "rwi.etl.CallEvent",
    "transfer": "rwi.etl.TransferEvent",
    "media": "rwi.etl.MediaEvent",
    "recording": "rwi.etl.RecordingEvent",
    "ivr": "rwi.etl.IvrEvent",
    "queue": "rwi.etl.QueueEvent",
    "agent": "rwi.etl.AgentEvent",
    "extension": "rwi.etl.ExtensionEvent",
    "metadata": "rwi.etl.MetadataEvent",
    "conference": "rwi.etl.ConferenceEvent",
    "supervisor": "rwi.etl.SupervisorEvent",
    "originate": "rwi.etl.OriginateEvent",
    "sip": "rwi.etl.SipEvent",
    "session": "rwi.etl.SessionEvent",
    "transcript": "rwi.etl.TranscriptEvent",
    "unknown": "rwi.etl.UnknownEvent",
}
DEAD_LETTER_SCHEMA = "rwi.etl.DeadLetter"


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One row of the catalog."""

    event_type: str
    category: str
    key_field: str
    dispatch: Dispatch
    in_v1_0: bool
    in_current: bool
    cc_addon: bool
    notes: str

    @property
    def schema(self) -> str:
        return CATEGORY_SCHEMA[self.category]

    @property
    def dialects(self) -> tuple[str, ...]:
        found = []
        if self.in_v1_0:
            found.append(Dialect.V1_0.value)
        if self.in_current or self.cc_addon:
            found.append(Dialect.CURRENT.value)
        return tuple(found)


O, F, B, M, W = (  # noqa: E741
    Dispatch.OWNER,
    Dispatch.FAN_OUT,
    Dispatch.BROADCAST,
    Dispatch.MULTI_OWNER,
    Dispatch.WEBHOOK_ONLY,
)
# Presence flags: "1" = v1.0 reference, "c" = RustPBX core today, "a" = contact-centre addon.
_ROWS: tuple[tuple[str, str, str, Dispatch, str, str], ...] = (
    # event_type, category, key field, dispatch, presence, notes
    ("call_incoming", "call", "call_id", F, "1", "v1.0 name of call_created; uses dial_direction"),
    ("call_created", "call", "call_id", O, "c", "renamed from call_incoming on 2026-08-20"),
    (
        "call_ringing",
        "call",
        "call_id",
        O,
        "1c",
        "repeats with an identical payload on queue retries",
    ),
    ("call_early_media", "call", "call_id", O, "1c", "originate only in current"),
    ("call_answered", "call", "call_id", O, "1c", "not sent while an IVR/queue app runs (current)"),
    ("call_bridged", "call", "leg_a", M, "1c", "no call_id; one delivery per leg"),
    ("call_unbridged", "call", "call_id", O, "1c", ""),
    ("call_hangup", "call", "call_id", O, "1c", "reason, hangup_by (current), sip_status"),
    ("call_no_answer", "call", "call_id", O, "1c", "originate final 408/480/487 or timeout"),
    ("call_busy", "call", "call_id", O, "1c", "originate final 486/600"),
    ("call_transferred", "transfer", "call_id", O, "1c", "broadcast after INVITE/Replaces"),
    ("call_transfer_accepted", "transfer", "call_id", O, "1c", ""),
    ("call_transfer_failed", "transfer", "call_id", O, "1c", ""),
    ("media_hold_started", "media", "call_id", O, "1c", "only from hold commands"),
    ("media_hold_stopped", "media", "call_id", O, "1c", "only from unhold commands"),
    ("media_ringback_passthrough_started", "media", "source", M, "1c", "delivered to both legs"),
    ("media_ringback_passthrough_stopped", "media", "source", O, "1", "no producer in current"),
    ("media_play_started", "media", "call_id", O, "1c", ""),
    ("media_play_finished", "media", "call_id", O, "1c", ""),
    ("media_stream_started", "media", "call_id", O, "1", "removed 2026-08-10"),
    ("media_stream_stopped", "media", "call_id", O, "1", "removed 2026-08-10"),
    ("dtmf", "media", "call_id", F, "1c", "owner dispatch in current, only while an app runs"),
    ("dtmf_collected", "media", "call_id", O, "1c", ""),
    ("dtmf_collection_timeout", "media", "call_id", O, "1c", ""),
    ("record_started", "recording", "call_id", O, "1c", "not sent for automatic recordings"),
    ("record_paused", "recording", "call_id", O, "1c", ""),
    ("record_resumed", "recording", "call_id", O, "1c", ""),
    ("record_stopped", "recording", "call_id", O, "1c", "also for automatic recordings"),
    ("record_failed", "recording", "call_id", O, "1", "not in current core"),
    ("recording_metadata_available", "recording", "call_id", O, "1c", "after upload; late"),
    ("record_end", "recording", "call_id", O, "1c", "after upload; current duration = call length"),
    ("ivr_node_entered", "ivr", "call_id", F, "1c", ""),
    ("ivr_node_exited", "ivr", "call_id", F, "1c", ""),
    ("ivr_flow_transitioned", "ivr", "call_id", F, "1", "no producer in current"),
    ("ivr_flow_completed", "ivr", "call_id", F, "1c", ""),
    ("ivr_step_trace", "ivr", "call_id", F, "1c", "own session_id is the IVR session"),
    ("queue_joined", "queue", "call_id", B, "1ca", ""),
    ("queue_position_changed", "queue", "call_id", O, "1c", "defined, no core producer"),
    ("queue_agent_offered", "queue", "call_id", B, "1ca", "needs an agent registry"),
    ("queue_agent_connected", "queue", "call_id", B, "1ca", "answer time of a queued call"),
    ("queue_left", "queue", "call_id", B, "1ca", "reason connected | abandoned | requeued"),
    ("queue_wait_timeout", "queue", "call_id", B, "1ca", ""),
    ("queue_overflowed", "queue", "call_id", O, "1", "no producer in current"),
    ("queue_voicemail_redirected", "queue", "call_id", O, "1", "no producer in current"),
    ("queue_candidates_found", "queue", "call_id", O, "1c", "defined, no core producer"),
    ("queue_agent_ringing", "queue", "call_id", O, "1", "no producer in current"),
    ("queue_agent_no_answer", "queue", "call_id", B, "1ca", "needs an agent registry"),
    ("queue_agent_rejected", "queue", "call_id", O, "1c", "defined, no core producer"),
    ("queue_fallback_executed", "queue", "call_id", B, "1ca", ""),
    ("queue_alert", "queue", "queue_id", B, "1a", "no call_id"),
    ("agent_state_changed", "agent", "agent_id", B, "1a", "contact-centre addon in current"),
    ("agent_registered", "agent", "agent_id", B, "a", "contact-centre addon"),
    ("agent_unregistered", "agent", "agent_id", B, "a", "contact-centre addon"),
    ("dn_state_changed", "extension", "caller", B, "1", "key = extension"),
    ("dn_registered", "extension", "caller", B, "1", "key = extension"),
    ("dn_unregistered", "extension", "caller", B, "1", "key = extension"),
    ("call_metadata_updated", "metadata", "call_id", O, "1", ""),
    ("conference_created", "conference", "conf_id", B, "1c", "envelope call_id is empty"),
    ("conference_destroyed", "conference", "conf_id", B, "1c", "envelope call_id is empty"),
    ("conference_member_joined", "conference", "conf_id", B, "1c", ""),
    ("conference_member_left", "conference", "conf_id", B, "1c", ""),
    ("conference_member_muted", "conference", "conf_id", B, "1c", ""),
    ("conference_member_unmuted", "conference", "conf_id", B, "1c", ""),
    ("conference_ended_by_host", "conference", "conf_id", B, "1c", ""),
    ("conference_auto_ended", "conference", "conf_id", B, "1", "no producer in current"),
    ("conference_error", "conference", "conf_id", B, "1c", ""),
    ("conference_consult_dialing", "conference", "call_id", O, "1", "removed 2026-08-10"),
    ("conference_consult_connected", "conference", "call_id", O, "1", "removed 2026-08-10"),
    ("conference_merge_requested", "conference", "call_id", F, "1c", "broadcast in current"),
    ("conference_merged", "conference", "conf_id", F, "1c", "broadcast in current"),
    ("conference_merge_failed", "conference", "conf_id", F, "1c", "broadcast in current"),
    ("conference_seat_replace_started", "conference", "conf_id", F, "1c", ""),
    ("conference_seat_replace_succeeded", "conference", "conf_id", F, "1c", ""),
    ("conference_seat_replace_failed", "conference", "conf_id", F, "1c", ""),
    ("conference_seat_replace_rollback_failed", "conference", "conf_id", F, "1", ""),
    ("conference_joined", "conference", "conf_id", O, "c", "dial-in leg joined a room"),
    ("conference_left", "conference", "conf_id", O, "c", "defined, no producer"),
    ("supervisor_listen_started", "supervisor", "target_call_id", M, "1c", "2-3 deliveries"),
    ("supervisor_whisper_started", "supervisor", "target_call_id", M, "1c", "2-3 deliveries"),
    ("supervisor_barge_started", "supervisor", "target_call_id", M, "1c", "2-3 deliveries"),
    ("supervisor_takeover_started", "supervisor", "target_call_id", M, "1c", "2-3 deliveries"),
    ("supervisor_mode_stopped", "supervisor", "target_call_id", M, "1c", "2-3 deliveries"),
    ("parallel_originate_started", "originate", "operation_id", O, "1", "removed 2026-08-10"),
    ("parallel_originate_leg_ringing", "originate", "call_id", O, "1", "removed 2026-08-10"),
    ("parallel_originate_winner", "originate", "call_id", O, "1", "removed 2026-08-10"),
    ("parallel_originate_leg_cancelled", "originate", "call_id", O, "1", "removed 2026-08-10"),
    ("parallel_originate_completed", "originate", "operation_id", O, "1", "removed 2026-08-10"),
    ("parallel_originate_failed", "originate", "operation_id", O, "1", "removed 2026-08-10"),
    ("sip_message_received", "sip", "call_id", O, "1c", "echo of an outgoing sip.message"),
    ("sip_notify_received", "sip", "call_id", O, "1c", "echo of an outgoing sip.notify"),
    ("call_ownership_changed", "session", "call_id", O, "1", ""),
    ("session_resumed", "session", "session_id", O, "1", "not sent by current"),
    ("test", "session", "call_id", W, "c", "console webhook test; event nested under `test`"),
    ("transcript_started", "transcript", "call_id", O, "c", ""),
    ("transcript_segment", "transcript", "call_id", O, "c", ""),
    ("transcript_error", "transcript", "call_id", O, "c", ""),
    ("transcript_ended", "transcript", "call_id", O, "c", ""),
    ("cc_ringing", "queue", "call_id", B, "a", "contact-centre addon"),
    ("cc_answered", "queue", "call_id", B, "a", "contact-centre addon"),
    ("cc_hangup", "queue", "call_id", B, "a", "contact-centre addon"),
    ("cc_held", "queue", "call_id", B, "a", "contact-centre addon"),
    ("cc_unheld", "queue", "call_id", B, "a", "contact-centre addon"),
    ("skill_group_candidates_found", "queue", "call_id", B, "a", "contact-centre addon"),
    ("skill_group_agent_assigned", "queue", "call_id", B, "a", "contact-centre addon"),
    ("skill_group_no_agent", "queue", "call_id", B, "a", "contact-centre addon"),
    ("skill_group_call_queued", "queue", "call_id", B, "a", "contact-centre addon"),
    ("skill_group_call_abandoned", "queue", "call_id", B, "a", "contact-centre addon"),
    ("skill_group_service_unavailable", "queue", "call_id", B, "a", "contact-centre addon"),
)

CATALOG: dict[str, EventSpec] = {
    row[0]: EventSpec(
        event_type=row[0],
        category=row[1],
        key_field=row[2],
        dispatch=row[3],
        in_v1_0="1" in row[4],
        in_current="c" in row[4],
        cc_addon="a" in row[4],
        notes=row[5],
    )
    for row in _ROWS
}

UNKNOWN = EventSpec("unknown", "unknown", "call_id", O, False, False, False, "any other type")

# Older and newer names of the same fact.
ALIASES: dict[str, str] = {"call_incoming": "call_created"}


def lookup(event_type: str) -> EventSpec:
    """The catalog row for a type; unknown types get the ``unknown`` row (never dropped)."""
    return CATALOG.get(event_type, UNKNOWN)


def topic_for(category: str, prefix: str = "rwi") -> str:
    """Topic name ``<prefix>.<category>.v<major>``."""
    return f"{prefix}.{category}.v{SCHEMA_MAJOR}"


def dead_letter_topic(prefix: str = "rwi") -> str:
    return f"{prefix}.{DEAD_LETTER_TOPIC_SUFFIX}"


def all_topics(prefix: str = "rwi") -> list[str]:
    """Every topic the project writes: one per category plus the dead-letter topic."""
    return [topic_for(c, prefix) for c in CATEGORIES] + [dead_letter_topic(prefix)]


def types_in(dialect: Dialect, *, cc_addon: bool = True) -> list[str]:
    """Event types a server of that dialect can send."""
    if dialect is Dialect.V1_0:
        return [s.event_type for s in CATALOG.values() if s.in_v1_0]
    return [s.event_type for s in CATALOG.values() if s.in_current or (cc_addon and s.cc_addon)]
