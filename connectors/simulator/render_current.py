"""Renderer for today's RustPBX (dialect ``current``), per ``rwi-wire-protocol.md`` §1-§5.

Each typed event is a flat object with ``event_type``; an ``Option`` field that is
``None`` is present as ``null`` (so it blocks context enrichment), while context keys
are added only when absent. Events sent with ``send_to_owner_at`` (``call_bridged``,
supervisor events, ringback) become one delivery per target leg. The resume cache keeps
the un-enriched original.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from connectors.simulator.records import Fact, Leg
from connectors.simulator.templates import SORTED, Build, compile_current, context_values
from connectors.simulator.timefmt import nanos_for, rfc3339_autosi

# What the resume cache needs to rebuild the un-enriched event: text, or (kind, data, call id).
Raw = tuple[str, dict[str, Any], str | None] | dict[str, Any] | str
# (t_us, event_type, envelope call_id, dispatch O|F|B|W, route, event JSON text, raw) -- the
# last item is a ``Raw`` today; 1.0 uses it for what only the encoder can fill in.
Emission = tuple[int, str, str, str, str, str, Any]

_C = ("call_id",)
_SPEC: dict[str, tuple[tuple[str, ...], str]] = {
    "call_ringing": (_C, "O"), "call_early_media": (_C, "O"), "call_answered": (_C, "O"),
    "call_hangup": (("call_id", "reason", "hangup_by", "sip_status"), "O"),
    "call_no_answer": (_C, "O"), "call_busy": (_C, "O"), "call_unbridged": (_C, "O"),
    "call_bridged": (("leg_a", "leg_b"), "O"),
    "call_transferred": (("call_id", "transfer_target"), "O"),
    "call_transfer_accepted": (("call_id", "transfer_target"), "O"),
    "call_transfer_failed": (("call_id", "sip_status", "reason", "transfer_target"), "O"),
    "record_started": (_C, "O"), "record_paused": (_C, "O"), "record_resumed": (_C, "O"),
    "transcript_started": (("call_id", "sides", "provider"), "O"),
    "transcript_segment": (("call_id", "side", "text", "partial", "start_ms", "end_ms", "lang"),
                           "O"),
    "transcript_error": (("call_id", "side", "error"), "O"),
    "transcript_ended": (("call_id", "reason"), "O"),
    "media_hold_started": (_C, "O"), "media_hold_stopped": (_C, "O"),
    "media_ringback_passthrough_started": (("source", "target"), "O"),
    "media_play_started": (("call_id", "leg_id", "track_id"), "O"),
    "media_play_finished": (("call_id", "leg_id", "track_id", "interrupted"), "O"),
    "dtmf": (("call_id", "digit", "leg_id", "extra"), "O"),
    "dtmf_collected": (("call_id", "leg_id", "digits"), "O"),
    "dtmf_collection_timeout": (("call_id", "leg_id"), "O"),
    "ivr_node_entered": (("call_id", "node_id", "node_name", "node_type", "app_id", "entry_time",
                          "caller_name", "callee_name", "routing_target", "previous_node_id",
                          "extra"), "F"),
    "ivr_node_exited": (("call_id", "node_id", "node_name", "result_value", "duration_ms",
                         "exit_time", "next_node_id", "hangup_reason", "call_result", "extra"),
                        "F"),
    "ivr_flow_completed": (("call_id", "app_id", "total_nodes_traversed", "total_duration_ms",
                            "final_result", "completion_time", "final_routing_target", "extra"),
                           "F"),
    "queue_joined": (("call_id", "queue_id"), "B"),
    "queue_agent_offered": (("call_id", "queue_id", "agent_id"), "B"),
    "queue_agent_connected": (("call_id", "queue_id", "agent_id"), "B"),
    "queue_agent_no_answer": (("call_id", "queue_id", "agent_id", "attempt", "trace_id"), "B"),
    "queue_left": (("call_id", "queue_id", "reason"), "B"),
    "queue_wait_timeout": (("call_id", "queue_id"), "B"),
    "queue_fallback_executed": (("call_id", "queue_id", "action", "reason", "trace_id"), "B"),
    "queue_alert": (("queue_id", "alert_type", "message"), "B"),
    "conference_created": (("conf_id",), "B"), "conference_destroyed": (("conf_id",), "B"),
    "conference_error": (("conf_id", "error"), "B"),
    "conference_member_joined": (("conf_id", "call_id"), "B"),
    "conference_member_left": (("conf_id", "call_id"), "B"),
    "conference_member_muted": (("conf_id", "call_id"), "B"),
    "conference_member_unmuted": (("conf_id", "call_id"), "B"),
    "conference_ended_by_host": (("conf_id", "host_call_id", "removed_call_ids"), "B"),
    "conference_merge_requested": (("call_id", "consultation_call_id"), "B"),
    "conference_merged": (("conf_id", "call_id"), "B"),
    "conference_merge_failed": (("conf_id", "call_id", "reason"), "B"),
    "conference_seat_replace_started": (("conf_id", "old_call_id", "new_call_id"), "B"),
    "conference_seat_replace_succeeded": (("conf_id", "old_call_id", "new_call_id"), "B"),
    "conference_seat_replace_failed": (("conf_id", "old_call_id", "new_call_id", "reason"), "B"),
    "conference_joined": (("conf_id", "call_id", "leg_id"), "O"),
    "sip_message_received": (("call_id", "content_type", "body"), "O"),
    "sip_notify_received": (("call_id", "event", "content_type", "body"), "O"),
    "record_end": (("call_id", "url", "duration_secs", "file_size"), "O"),
    "agent_state_changed": (("agent_id", "from_status", "to_status", "call_id", "agent_name",
                             "agent_extension", "caller", "team_id", "duration_secs",
                             "reason_code"), "B"),
    "agent_registered": (("agent_id", "agent_name", "agent_extension", "team_id"), "B"),
    "agent_unregistered": (("agent_id", "agent_name", "agent_extension", "team_id"), "B"),
    "cc_ringing": (("call_id", "agent_id", "agent_name", "queue_id"), "B"),
    "cc_answered": (("call_id", "agent_id", "agent_name", "queue_id"), "B"),
    "cc_held": (("call_id", "agent_id", "agent_name", "queue_id"), "B"),
    "cc_unheld": (("call_id", "agent_id", "agent_name", "queue_id"), "B"),
    "cc_hangup": (("call_id", "agent_id", "agent_name", "queue_id", "reason", "hangup_by",
                   "talk_secs", "duration_secs"), "B"),
    "skill_group_candidates_found": (("call_id", "skill_group_id", "candidates"), "B"),
    "skill_group_agent_assigned": (("call_id", "skill_group_id", "agent_id", "attempt",
                                    "dispatch_reason"), "B"),
    "skill_group_no_agent": (("call_id", "skill_group_id", "reason"), "B"),
    "skill_group_call_queued": (("call_id", "skill_group_id", "reason", "waiting_count"), "B"),
    "skill_group_call_abandoned": (("call_id", "skill_group_id", "wait_secs", "waiting_count"),
                                   "B"),
    "skill_group_service_unavailable": (("call_id", "skill_group_id", "reason"), "B"),
}
_SPEC["recording_metadata_available"] = (("call_id", "metadata"), "O")
_SPEC["call_created"] = (("call_id", "context", "caller", "callee", "trunk", "sip_headers",
                          "caller_name", "callee_name", "called_phone", "app_id",
                          "routing_target", "uuid", "routing_path"), "O")
_SPEC["record_stopped"] = (("call_id", "duration_secs", "filename", "unique_id", "file_size",
                            "download_url", "caller_name", "callee_name", "called_phone",
                            "call_type", "agent_id", "agent_name", "call_start_time",
                            "call_end_time", "upload_time", "switch_flag"), "O")
for _name in ("listen", "whisper", "barge", "takeover"):
    _SPEC[f"supervisor_{_name}_started"] = (("supervisor_call_id", "target_call_id"), "O")
_SPEC["supervisor_mode_stopped"] = (("supervisor_call_id", "target_call_id"), "O")
_TIMES = frozenset({"entry_time", "exit_time", "completion_time", "step_start_time",
                    "step_end_time"})
# Keys whose events have no call id of their own: never enriched.
_UNKEYED = frozenset({"call_bridged", "conference_created", "conference_destroyed",
                      "conference_error", "queue_alert"})
# context keys -> {kind: compiled template}, shared by every renderer; legs point at the
# entry of their context's keys.
_BY_KEYS: dict[tuple[str, ...], dict[str, Build]] = {(): {}}
_STEP_FIELDS = ("call_id", "session_id", "caller", "callee", "step_index", "trigger",
                "action_type", "action_json", "duration_ms", "error", "step_id", "step_name",
                "step_start_time", "step_end_time", "extra", "sip_headers")


class CurrentRenderer:
    """Facts to today's flat, enriched event texts (one emission per delivery)."""

    dialect = "current"

    def __init__(self) -> None:
        self._custom = {
            "call_start": self._call_created, "record_stopped": self._record_stopped,
            "recording_metadata_available": self._metadata, "record_end": self._record_end,
            "ivr_step_trace": self._step_trace, "_reparent": self._reparent, "test": self._test,
        }
        # kind -> (dispatch, never enriched?)
        self._plans: dict[str, tuple[str, bool]] = {
            kind: (dispatch, kind in _UNKEYED) for kind, (_, dispatch) in _SPEC.items()}
        # kind -> dispatch, for the typed events enriched with their leg's context
        self._keyed = {k: dispatch for k, (dispatch, unkeyed) in self._plans.items()
                       if k not in self._custom and not unkeyed}
        self._by_keys = _BY_KEYS
        # Deliveries beyond the first of one event (``send_to_owner_at`` fan-out), per type,
        # until the caller takes them.
        self.fanout: Counter[str] = Counter()

    def _context(self, leg: Leg) -> tuple[str, ...]:
        """Encode the leg's context once (again after it changes)."""
        keys, values = context_values(leg.ctx_current, leg.call_id)
        builds = self._by_keys.get(keys)
        if builds is None:
            builds = self._by_keys[keys] = {}
        leg.ctx_sig, leg.ctx_frag, leg.ctx_builds = keys, values, builds
        return values

    def _build(self, kind: str, keys: tuple[str, ...]) -> Build:
        builds = self._by_keys[keys]
        build = builds.get(kind)
        if build is None:
            build = builds[kind] = compile_current(kind, _SPEC[kind][0], keys, _TIMES)
        return build

    def render(self, fact: Fact) -> list[Emission]:
        t, _, kind, leg, data = fact
        dispatch = self._keyed.get(kind)
        if dispatch is None or leg is None:
            custom = self._custom.get(kind)
            if custom is not None:
                return custom(t, leg, data)
            return self._templated(t, kind, self._plans[kind], leg, data)
        # A typed event of a leg, enriched with its context: the common case.
        cid = leg.call_id
        values = leg.ctx_frag or self._context(leg)
        build = leg.ctx_builds.get(kind) or self._build(kind, leg.ctx_sig)
        text = build(data, cid, values)
        routes = data.get("_routes")
        if routes:
            self.fanout[kind] += len(routes) - 1
            return [(t, kind, r, "O", r, text, (kind, data, cid)) for r in routes]
        return [(t, kind, cid, dispatch, cid, text, (kind, data, cid))]

    def _templated(self, t: int, kind: str, plan: tuple[str, bool], leg: Leg | None,
                   data: dict[str, Any]) -> list[Emission]:
        dispatch, unkeyed = plan
        if leg is None:
            cid = None
            env = data.get("call_id") or ""
            keys: tuple[str, ...] = ()
            values: tuple[str, ...] = ()
        else:
            env = cid = leg.call_id
            if unkeyed:
                keys, values = (), ()
            else:
                values = leg.ctx_frag or self._context(leg)
                keys = leg.ctx_sig
        build = self._by_keys[keys].get(kind) or self._build(kind, keys)
        text = build(data, cid, values)
        raw: Raw = (kind, data, cid)
        routes = data.get("_routes")
        if routes:
            self.fanout[kind] += len(routes) - 1
            return [(t, kind, r, "O", r, text, raw) for r in routes]
        return [(t, kind, env, dispatch, env, text, raw)]

    def raw_text(self, raw: Raw) -> str:
        """The un-enriched event as the resume cache keeps it."""
        if isinstance(raw, str):
            return raw
        if isinstance(raw, dict):
            return SORTED(raw)
        kind, data, cid = raw
        return self._build(kind, ())(data, cid, ())

    def _emit(self, t: int, kind: str, leg: Leg, raw: dict[str, Any],
              dispatch: str = "O") -> list[Emission]:
        text = SORTED({**leg.ctx_current, **raw})
        return [(t, kind, leg.call_id, dispatch, leg.call_id, text, raw)]

    def _call_created(self, t: int, leg: Leg | None, data: dict[str, Any]) -> list[Emission]:
        assert leg is not None
        fields = {"context": "default", "caller": leg.caller, "callee": leg.callee,
                  "sip_headers": leg.sip_headers}
        return self._templated(t, "call_created", self._plans["call_created"], leg, fields)

    def _record_stopped(self, t: int, leg: Leg | None, data: dict[str, Any]) -> list[Emission]:
        assert leg is not None
        rec = data["rec"]
        fields = {
            "duration_secs": rec.duration_secs, "filename": rec.filename,
            "unique_id": leg.call_id, "file_size": rec.file_size,
            "caller_name": leg.caller_name if leg.uas else None,
            "callee_name": leg.callee_name if leg.uas else None,
        }
        return self._templated(t, "record_stopped", self._plans["record_stopped"], leg, fields)

    def _metadata(self, t: int, leg: Leg | None, data: dict[str, Any]) -> list[Emission]:
        assert leg is not None and leg.ended is not None
        rec = data["rec"]
        meta: dict[str, Any] = {
            "filename": rec.meta_filename, "file_size": rec.file_size,
            "download_url": rec.download_url, "call_type": rec.call_type,
            "call_start_time": _ts(leg.created), "call_end_time": _ts(leg.ended),
            "upload_time": _ts(rec.upload_time),
        }
        if leg.uas:
            meta["caller_name"] = leg.caller_name
            meta["callee_name"] = leg.callee_name
        if rec.agent_id is not None and not rec.agent_id.startswith("sip:"):
            meta["agent_id"] = rec.agent_id
            if leg.queue_visits:
                meta["queue_id"] = leg.queue_visits[-1].queue_id
        if rec.pauses:
            meta["recording_segments"] = _segments(rec.started, rec.stopped, rec.pauses)
        meta = {k: v for k, v in meta.items() if v is not None}
        return self._templated(t, "recording_metadata_available",
                               self._plans["recording_metadata_available"], leg,
                               {"metadata": meta})

    def _record_end(self, t: int, leg: Leg | None, data: dict[str, Any]) -> list[Emission]:
        assert leg is not None and leg.ended is not None
        rec = data["rec"]
        fields = {"url": rec.download_url, "duration_secs": (leg.ended - leg.created) // 1_000_000,
                  "file_size": rec.file_size}
        return self._templated(t, "record_end", self._plans["record_end"], leg, fields)

    def _step_trace(self, t: int, leg: Leg | None, data: dict[str, Any]) -> list[Emission]:
        assert leg is not None
        raw: dict[str, Any] = {"event_type": "ivr_step_trace", "call_id": leg.call_id}
        for name in _STEP_FIELDS[1:]:
            value = data.get(name)
            if value is not None and name in _TIMES:
                value = rfc3339_autosi(value, nanos_for(value))
            raw[name] = value
        trigger = data["trigger"]
        raw["trigger"] = {"type": trigger["type"]} if trigger["detail"] is None else trigger
        for name in ("end_reason", "end_detail"):
            if data.get(name) is not None:
                raw[name] = data[name]
        return self._emit(t, "ivr_step_trace", leg, raw, "F")

    def _reparent(self, t: int, leg: Leg | None, data: dict[str, Any]) -> list[Emission]:
        assert leg is not None
        leg.ctx_current = {**leg.ctx_current, "session_id": data["session_id"]}
        leg.ctx_frag = None
        return []

    def _test(self, t: int, leg: Leg | None, data: dict[str, Any]) -> list[Emission]:
        text = SORTED({"test": {"message": "RustPBX RWI webhook test"}})
        return [(t, "test", "test-call-id", "W", "", text, text)]


def _ts(t: int | None) -> str | None:
    return None if t is None else rfc3339_autosi(t, nanos_for(t))


def _segments(start: int, stop: int | None, pauses: list[list[int | None]]) -> str:
    """The recorded stretches between pauses, as the JSON text the CDR stores."""
    spans, at = [], start
    for paused, resumed in pauses:
        spans.append({"start_ms": (at - start) // 1000,
                      "end_ms": (int(paused or at) - start) // 1000})
        at = int(resumed or at)
    spans.append({"start_ms": (at - start) // 1000, "end_ms": (int(stop or at) - start) // 1000})
    return json.dumps(spans, separators=(",", ":"))
