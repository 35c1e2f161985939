"""Parsed events to canonical events: field renames, context, typing, ``extra``, ids."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pipelines.catalog import lookup
from pipelines.events import CanonicalEvent, canonical_json
from pipelines.fieldtypes import coerce, context_kinds, is_missing, payload_kinds, root_fields
from pipelines.identity import OccurrenceTracker, event_id, fact_key
from pipelines.parse import ParsedEvent

# Own fields whose names clash with the canonical envelope or another meaning.
FIELD_RENAMES: dict[str, dict[str, str]] = {
    "*": {"extra": "event_extra", "context": "dialplan_context"},
    "ivr_step_trace": {"session_id": "ivr_session_id", "event_type": "trigger_type"},
    "media_ringback_passthrough_started": {
        "source": "ringback_source",
        "target": "ringback_target",
    },
    "media_ringback_passthrough_stopped": {
        "source": "ringback_source",
        "target": "ringback_target",
    },
    "sip_notify_received": {"event": "sip_event"},
    "call_ownership_changed": {"session_id": "ws_session_id"},
    "session_resumed": {"session_id": "ws_session_id"},
}
# Nested objects whose fields are lifted to the top level.
_FLATTEN: dict[str, str] = {
    "recording_metadata_available": "metadata",
    "call_metadata_updated": "metadata",
    "test": "test",
}
# Pre-2026-06-08 names of context fields.
_CONTEXT_ALIASES = {"ani": "caller_name", "dnis": "callee_name"}


def _flatten(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    nested_key = _FLATTEN.get(event_type)
    if nested_key and isinstance(payload.get(nested_key), dict):
        out = {k: v for k, v in payload.items() if k != nested_key}
        for k, v in payload[nested_key].items():
            out.setdefault(k, v)
        return out
    trigger = payload.get("trigger")
    if event_type == "ivr_step_trace" and isinstance(trigger, dict):
        out = {k: v for k, v in payload.items() if k != "trigger"}
        out.setdefault("trigger_type", trigger.get("type"))
        if "detail" in trigger:
            out.setdefault("trigger_detail", trigger["detail"])
        return out
    return payload


class Normalizer:
    """Turns parsed events into canonical ones; holds the occurrence table for event ids."""

    def __init__(self, pbx: str, tracker: OccurrenceTracker | None = None) -> None:
        self.pbx = pbx
        self.tracker = tracker if tracker is not None else OccurrenceTracker()

    def normalize(self, parsed: ParsedEvent) -> CanonicalEvent:
        spec = lookup(parsed.event_type)
        category = spec.category
        kinds = payload_kinds(category)
        ctx_kinds = context_kinds()
        warnings = list(parsed.warnings)
        renames = {**FIELD_RENAMES["*"], **FIELD_RENAMES.get(parsed.event_type, {})}

        flat = _flatten(parsed.event_type, parsed.payload)
        fields: dict[str, Any] = dict.fromkeys(kinds)
        context: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        session_id = None
        for raw_key, value in flat.items():
            key = renames.get(raw_key, raw_key)
            if key not in kinds and raw_key in kinds:
                key = raw_key
            if key == "call_id" and "call_id" not in kinds:
                if value is not None and not isinstance(value, str):
                    warnings.append("call_id: expected string")
                    extra[raw_key] = value
                continue
            if key == "session_id":
                if isinstance(value, str) and value:
                    session_id = value
                elif value is not None:
                    extra[raw_key] = value
                continue
            key = _CONTEXT_ALIASES.get(key, key) if key not in kinds else key
            if key in ctx_kinds and key not in kinds:
                if key == "root":
                    root = self._root(value, warnings, extra)
                    if root is not None:
                        context["root"] = root
                    continue
                typed = coerce(value, ctx_kinds[key])
                if is_missing(typed):
                    warnings.append(f"{raw_key}: expected {ctx_kinds[key]}")
                    extra[raw_key] = value
                elif typed is not None and context.get(key) is None:
                    context[key] = typed
                elif typed is not None and context.get(key) != typed:
                    extra[raw_key] = value  # an alias and its new name disagree: keep both
                continue
            if key in kinds:
                typed = coerce(value, kinds[key])
                if is_missing(typed):
                    warnings.append(f"{raw_key}: expected {kinds[key]}")
                    extra[raw_key] = value
                else:
                    fields[key] = typed
                continue
            extra[raw_key] = value

        if "direction" not in context and isinstance(flat.get("dial_direction"), str):
            context["direction"] = flat["dial_direction"]
        if session_id is None and isinstance(context.get("root_call_id"), str):
            session_id = context["root_call_id"]

        call_id = flat.get("call_id") if isinstance(flat.get("call_id"), str) else None
        call_id = call_id or parsed.envelope_call_id
        key_value = flat.get(spec.key_field)
        key = (
            key_value
            if isinstance(key_value, str) and key_value
            else (call_id or parsed.event_type)
        )

        fkey = fact_key(self.pbx, parsed.event_type, parsed.payload)
        occurrence = self.tracker.assign(
            fkey, parsed.source, parsed.envelope_call_id or "", parsed.instant
        )
        return CanonicalEvent(
            event_id=event_id(fkey, occurrence),
            event_type=parsed.event_type,
            category=category,
            call_id=call_id,
            session_id=session_id,
            event_time=parsed.event_time or parsed.received_at,
            received_at=parsed.received_at,
            source=parsed.source,
            pbx=self.pbx,
            dialect=parsed.dialect,
            key=key,
            occurrence=occurrence,
            sequence=parsed.sequence,
            envelope_call_id=parsed.envelope_call_id,
            context=self._complete_context(context) if context else None,
            fields=fields,
            extra=canonical_json(extra) if extra else None,
            warnings=tuple(warnings),
        )

    @staticmethod
    def _root(value: Any, warnings: list[str], extra: dict[str, Any]) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            warnings.append("root: expected object")
            extra["root"] = value
            return None
        root: dict[str, Any] = {}
        for name in root_fields():
            typed = coerce(value.get(name), "string")
            root[name] = None if is_missing(typed) else typed
        unknown = {k: v for k, v in value.items() if k not in root_fields()}
        bad = {k: value[k] for k in root_fields() if is_missing(coerce(value.get(k), "string"))}
        if unknown or bad:
            extra["root"] = value
        return root

    @staticmethod
    def _complete_context(context: dict[str, Any]) -> dict[str, Any]:
        return {name: context.get(name) for name in context_kinds()}


def received_now(clock: datetime) -> datetime:
    """Identity helper so callers pass an injected clock's value explicitly."""
    return clock
