"""Renderer for the RWI 1.0 reference (dialect ``v1.0``), per its §3-§7.

Fields follow the reference's declaration order; an ``Option`` that is ``None`` is
omitted (the reference's legend), except the fields its own examples show as ``null``.
``+ctx`` events get the flattened call context after their own fields, filling only keys
they do not already carry; the context grows during a call (app, routing target, agent).
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from typing import Any

from connectors.simulator.records import Fact, Leg
from connectors.simulator.render_current import Emission
from connectors.simulator.templates import ORDERED, Build, compile_v1, context_fragments_v1
from connectors.simulator.timefmt import iso_z_s

_C = ("call_id",)
_CTX, _BARE = True, False
# kind -> (fields, +ctx, dispatch O|F|B)
_SPEC: dict[str, tuple[tuple[str, ...], bool, str]] = {
    "call_ringing": (_C, _CTX, "O"), "call_early_media": (_C, _CTX, "O"),
    "call_answered": (_C, _CTX, "O"), "call_unbridged": (_C, _CTX, "O"),
    "call_no_answer": (_C, _CTX, "O"), "call_busy": (_C, _CTX, "O"),
    "call_bridged": (("leg_a", "leg_b"), _BARE, "O"),
    "call_hangup": (("call_id", "reason", "sip_status"), _CTX, "O"),
    "call_transferred": (_C, _CTX, "O"), "call_transfer_accepted": (_C, _CTX, "O"),
    "call_transfer_failed": (("call_id", "sip_status", "reason"), _CTX, "O"),
    "media_hold_started": (_C, _CTX, "O"), "media_hold_stopped": (_C, _CTX, "O"),
    "media_stream_started": (_C, _CTX, "O"), "media_stream_stopped": (_C, _CTX, "O"),
    "media_ringback_passthrough_started": (("source", "target"), _BARE, "O"),
    "media_ringback_passthrough_stopped": (("source", "target"), _BARE, "O"),
    "media_play_started": (("call_id", "leg_id", "track_id"), _CTX, "O"),
    "media_play_finished": (("call_id", "leg_id", "track_id", "interrupted"), _CTX, "O"),
    "dtmf": (("call_id", "digit", "leg_id"), _CTX, "F"),
    "dtmf_collected": (("call_id", "leg_id", "digits"), _CTX, "O"),
    "dtmf_collection_timeout": (("call_id", "leg_id"), _CTX, "O"),
    "record_started": (_C, _CTX, "O"), "record_paused": (_C, _CTX, "O"),
    "record_resumed": (_C, _CTX, "O"), "record_failed": (("call_id", "error"), _CTX, "O"),
    "ivr_node_entered": (("call_id", "node_id", "node_name", "node_type", "app_id", "entry_time",
                          "caller_name", "callee_name", "routing_target", "previous_node_id"),
                         _CTX, "F"),
    "ivr_node_exited": (("call_id", "node_id", "node_name", "result_value", "duration_ms",
                         "exit_time", "next_node_id", "hangup_reason", "call_result"), _CTX, "F"),
    "ivr_flow_transitioned": (("call_id", "from_app_id", "to_app_id", "from_node_id",
                               "to_node_id", "transition_reason", "transition_time",
                               "next_routing_target"), _CTX, "F"),
    "ivr_flow_completed": (("call_id", "app_id", "total_nodes_traversed", "total_duration_ms",
                            "final_result", "completion_time", "final_routing_target"),
                           _CTX, "F"),
    "queue_joined": (("call_id", "queue_id"), _CTX, "B"),
    "queue_position_changed": (("call_id", "queue_id", "position"), _CTX, "O"),
    "queue_agent_offered": (("call_id", "queue_id", "agent_id"), _CTX, "B"),
    "queue_agent_connected": (("call_id", "queue_id", "agent_id"), _CTX, "O"),
    "queue_left": (("call_id", "queue_id", "reason"), _CTX, "B"),
    "queue_wait_timeout": (("call_id", "queue_id"), _CTX, "O"),
    "queue_overflowed": (("call_id", "original_queue_id", "overflow_queue_id", "reason"),
                         _CTX, "O"),
    "queue_voicemail_redirected": (("call_id", "queue_id", "reason"), _CTX, "O"),
    "queue_candidates_found": (("call_id", "queue_id", "candidates", "trace_id"), _CTX, "O"),
    "queue_agent_ringing": (("call_id", "queue_id", "agent_id", "trace_id"), _CTX, "O"),
    "queue_agent_no_answer": (("call_id", "queue_id", "agent_id", "attempt", "trace_id"),
                              _CTX, "O"),
    "queue_agent_rejected": (("call_id", "queue_id", "agent_id", "attempt", "trace_id"),
                             _CTX, "O"),
    "queue_fallback_executed": (("call_id", "queue_id", "action", "reason", "trace_id"),
                                _CTX, "O"),
    "queue_alert": (("queue_id", "alert_type", "message"), _BARE, "B"),
    "agent_state_changed": (("agent_id", "from_status", "to_status", "call_id", "agent_name",
                             "agent_extension", "caller", "team_id", "duration_secs",
                             "reason_code"), _BARE, "B"),
    "dn_state_changed": (("caller", "event_name", "system_time", "call_id", "agent_id",
                          "caller_name", "callee_name", "reason_code", "agent_work_mode",
                          "releasing_party", "vq_name", "routing_target", "skill_group",
                          "extra"), _BARE, "B"),
    "dn_registered": (("caller", "agent_id", "register_time"), _BARE, "B"),
    "dn_unregistered": (("caller", "agent_id", "unregister_time"), _BARE, "B"),
    "conference_created": (("conf_id",), _BARE, "B"),
    "conference_destroyed": (("conf_id",), _BARE, "B"),
    "conference_member_joined": (("conf_id", "call_id"), _CTX, "B"),
    "conference_member_left": (("conf_id", "call_id"), _CTX, "B"),
    "conference_member_muted": (("conf_id", "call_id"), _CTX, "B"),
    "conference_member_unmuted": (("conf_id", "call_id"), _CTX, "B"),
    "conference_ended_by_host": (("conf_id", "host_call_id", "removed_call_ids"), _CTX, "B"),
    "conference_auto_ended": (("conf_id", "reason"), _CTX, "B"),
    "conference_error": (("conf_id", "error"), _BARE, "B"),
    "conference_consult_dialing": (("call_id", "target"), _CTX, "O"),
    "conference_consult_connected": (("call_id", "target"), _CTX, "O"),
    "conference_merge_requested": (("call_id", "consultation_call_id"), _CTX, "F"),
    "conference_merged": (("call_id", "conf_id"), _CTX, "F"),
    "conference_merge_failed": (("call_id", "conf_id", "reason"), _CTX, "F"),
    "conference_seat_replace_started": (("conf_id", "old_call_id", "new_call_id"), _BARE, "F"),
    "conference_seat_replace_succeeded": (("conf_id", "old_call_id", "new_call_id"), _BARE, "F"),
    "conference_seat_replace_failed": (("conf_id", "old_call_id", "new_call_id", "reason"),
                                       _BARE, "F"),
    "conference_seat_replace_rollback_failed": (("conf_id", "old_call_id", "new_call_id",
                                                 "reason"), _BARE, "F"),
    "parallel_originate_started": (("operation_id", "leg_count"), _BARE, "O"),
    "parallel_originate_leg_ringing": (("operation_id", "call_id", "destination"), _CTX, "O"),
    "parallel_originate_winner": (("operation_id", "call_id", "destination"), _CTX, "O"),
    "parallel_originate_leg_cancelled": (("operation_id", "call_id", "destination", "reason"),
                                         _CTX, "O"),
    "parallel_originate_completed": (("operation_id", "winning_call_id"), _BARE, "O"),
    "parallel_originate_failed": (("operation_id", "reason"), _BARE, "O"),
    "sip_message_received": (("call_id", "content_type", "body"), _CTX, "O"),
    "sip_notify_received": (("call_id", "content_type", "body", "event"), _CTX, "O"),
    "call_ownership_changed": (("call_id", "session_id", "mode"), _CTX, "O"),
    "record_end": (("call_id", "url", "duration_secs", "file_size"), _BARE, "O"),
    "ivr_step_trace": (("call_id", "session_id", "caller", "callee", "step_index", "event_type",
                        "action_type", "action_json", "result_kind", "duration_ms", "error",
                        "step_id", "step_name", "step_start_time", "step_end_time", "extra"),
                       _BARE, "F"),
}
for _name in ("listen", "whisper", "barge", "takeover"):
    _SPEC[f"supervisor_{_name}_started"] = (("supervisor_call_id", "target_call_id"), _BARE, "O")
_SPEC["supervisor_mode_stopped"] = (("supervisor_call_id", "target_call_id"), _BARE, "O")

# Instants inside payloads: microseconds for IVR and step times, milliseconds for DN times.
_FORMAT = {"entry_time": "_tu", "exit_time": "_tu", "completion_time": "_tu",
           "transition_time": "_tu", "step_start_time": "_tu", "step_end_time": "_tu",
           "system_time": "_tm", "register_time": "_tm", "unregister_time": "_tm"}
_KEEP_NULL = frozenset({"sip_status", "step_end_time"})
_RENAMED = {"event_type": "step_event_type"}  # ivr_step_trace's own ``event_type`` field
_ENVELOPE_FROM = {"call_bridged": "leg_a", "media_ringback_passthrough_started": "source",
                  "media_ringback_passthrough_stopped": "source"}


_WHOLE: frozenset[str] = frozenset()  # text_cache key of the whole context text
# Every key a leg's 1.0 context can hold (builder.Gen.set_context, Gen.v1_context calls).
CONTEXT_KEYS = frozenset({"caller", "callee", "caller_name", "callee_name", "direction",
                          "trunk", "app_id", "routing_target", "agent_id", "agent_name"})
# kind -> (template, +ctx, dispatch, own fields that can clash with the context (the
# text_cache key: all other types share the whole context text), field giving the
# envelope call_id)
_Plan = tuple[Build, bool, str, frozenset[str], str | None]


@cache
def _plans() -> dict[str, _Plan]:
    """Every event type's template, compiled once per process."""
    return {kind: (compile_v1(kind, fields, _KEEP_NULL, _FORMAT, _RENAMED), ctx, dispatch,
                   frozenset(fields) & CONTEXT_KEYS, _ENVELOPE_FROM.get(kind))
            for kind, (fields, ctx, dispatch) in _SPEC.items()}


class V1Renderer:
    """Facts to the 1.0 reference's event texts (one delivery each)."""

    dialect = "v1.0"

    def __init__(self) -> None:
        self._custom = {
            "call_start": self._call_incoming, "record_stopped": self._record_stopped,
            "recording_metadata_available": self._metadata, "record_end": self._record_end,
            "call_metadata_updated": self._call_metadata, "session_resumed": self._resumed,
            "_ctx_v1": self._context,
        }
        self._direct = {k: v for k, v in _plans().items() if k not in self._custom}
        self.sequence = 0
        self.fanout: Counter[str] = Counter()  # always empty: one delivery per event

    def render(self, fact: Fact) -> list[Emission]:
        t, _, kind, leg, data = fact
        plan = self._direct.get(kind)
        if plan is None:
            return self._custom[kind](t, leg, data)
        build, with_ctx, dispatch, own, source = plan
        if leg is None:
            text = build(data, None, "")
            env = route = ""
        else:
            env = leg.call_id
            if with_ctx:
                ctx = leg.text_cache.get(own)
                if ctx is None:
                    ctx = leg.text_cache[own] = _context_text(leg, own)
                text = build(data, env, ctx)
            else:
                text = build(data, env, "")
            route = leg.context if dispatch == "F" else env
        if source is not None:
            env = route = data[source]
        return [(t, kind, env, dispatch, route, text, text)]

    def _one(self, t: int, kind: str, leg: Leg, payload: dict[str, Any],
             dispatch: str = "O") -> list[Emission]:
        text = ORDERED(payload)
        return [(t, kind, leg.call_id, dispatch, leg.call_id if dispatch == "O" else leg.context,
                 text, text)]

    def _call_incoming(self, t: int, leg: Leg | None, data: dict[str, Any]) -> list[Emission]:
        assert leg is not None
        payload: dict[str, Any] = {
            "call_id": leg.call_id, "context": leg.context, "caller": leg.caller,
            "callee": leg.callee, "dial_direction": leg.direction,
        }
        if leg.trunk:
            payload["trunk"] = leg.trunk
        payload["sip_headers"] = leg.sip_headers
        payload["root_call_id"] = leg.root_call_id
        if leg.caller_name:
            payload["caller_name"] = leg.caller_name
        if leg.callee_name:
            payload["callee_name"] = leg.callee_name
        payload["called_phone"] = None
        payload["uuid"] = leg.uuid
        return self._one(t, "call_incoming", leg, payload, "F")

    def _recording(self, leg: Leg, rec: Any) -> dict[str, Any]:
        assert leg.ended is not None or rec.stopped is not None
        fields: dict[str, Any] = {
            "duration_secs": rec.duration_secs, "filename": rec.filename,
            "unique_id": rec.rec_id, "file_size": rec.file_size,
            "download_url": rec.download_url, "caller_name": leg.caller_name,
            "callee_name": leg.callee_name, "called_phone": None,
            "call_type": rec.call_type, "agent_id": rec.agent_id,
            "agent_name": leg.ctx_v1.get("agent_name") if rec.agent_id else None,
            "call_start_time": iso_z_s(leg.created),
            "call_end_time": iso_z_s(leg.ended) if leg.ended is not None else None,
            "upload_time": iso_z_s(rec.upload_time) if rec.upload_time is not None else None,
            "switch_flag": "ks",
        }
        return fields

    def _record_stopped(self, t: int, leg: Leg | None, data: dict[str, Any]) -> list[Emission]:
        assert leg is not None
        fields = self._recording(leg, data["rec"])
        payload = {"call_id": leg.call_id}
        payload.update((k, v) for k, v in fields.items() if v is not None)
        payload["root_call_id"] = leg.root_call_id
        return self._one(t, "record_stopped", leg, payload)

    def _metadata(self, t: int, leg: Leg | None, data: dict[str, Any]) -> list[Emission]:
        assert leg is not None
        fields = self._recording(leg, data["rec"])
        meta: dict[str, Any] = {"filename": fields["filename"], "unique_id": fields["unique_id"],
                                "file_size": fields["file_size"]}
        for key in ("download_url", "caller_name", "callee_name", "called_phone", "call_type",
                    "agent_id", "agent_name", "call_start_time", "call_end_time", "upload_time",
                    "switch_flag"):
            if fields[key] is not None or key == "called_phone":
                meta[key] = fields[key]
        meta["process_flag"] = "ks_22_normal"
        meta["root_call_id"] = leg.root_call_id
        return self._one(t, "recording_metadata_available", leg,
                         {"call_id": leg.call_id, "metadata": meta})

    def _record_end(self, t: int, leg: Leg | None, data: dict[str, Any]) -> list[Emission]:
        assert leg is not None
        rec = data["rec"]
        return self._one(t, "record_end", leg, {
            "call_id": leg.call_id, "url": rec.download_url, "duration_secs": rec.duration_secs,
            "file_size": rec.file_size})

    def _call_metadata(self, t: int, leg: Leg | None, data: dict[str, Any]) -> list[Emission]:
        assert leg is not None
        meta = {k: v for k, v in data["metadata"].items() if v is not None or k == "called_phone"}
        return self._one(t, "call_metadata_updated", leg, {"call_id": leg.call_id,
                                                           "metadata": meta})

    def _resumed(self, t: int, leg: Leg | None, data: dict[str, Any]) -> list[Emission]:
        # last_sequence depends on the sequence this delivery gets: the wire fills it in.
        return [(t, "session_resumed", "", "O", "", "", (data["session_id"], data["behind"]))]

    def _context(self, t: int, leg: Leg | None, data: dict[str, Any]) -> list[Emission]:
        assert leg is not None
        leg.ctx_v1 = {**leg.ctx_v1, **{k: v for k, v in data.items() if v is not None}}
        assert leg.ctx_v1.keys() <= CONTEXT_KEYS, "a new context key: add it to CONTEXT_KEYS"
        leg.ctx_frag = None
        leg.text_cache = {}
        return []


def _context_text(leg: Leg, own: frozenset[str]) -> str:
    """1.0's flattened context after an event's own fields, minus keys it already has.

    The leg's context is encoded once per change (``"key":value`` per key, in order); most
    events share no key with it and get the whole of it.
    """
    if leg.ctx_frag is None:
        leg.ctx_sig, leg.ctx_frag = context_fragments_v1(leg.ctx_v1)
    if own.isdisjoint(leg.ctx_sig):
        whole = leg.text_cache.get(_WHOLE)
        if whole is None:
            whole = leg.text_cache[_WHOLE] = ",".join(leg.ctx_frag)
        return whole
    return ",".join([frag for key, frag in zip(leg.ctx_sig, leg.ctx_frag, strict=True)
                     if key not in own])
