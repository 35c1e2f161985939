"""Parsed events to canonical events: field renames, context, typing, ``extra``, ids."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pipelines.catalog import CATALOG, lookup
from pipelines.events import CanonicalEvent, canonical_json
from pipelines.fieldtypes import MISSING, coerce, context_kinds, payload_kinds, root_fields
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


# How a raw key is handled, decided once per (event type, key) by ``_Plan``.
_FIELD, _CONTEXT, _ROOT, _CALL_ID, _SESSION = range(5)
_ROOT_FIELDS = root_fields()
_ROOT_FIELD_SET = frozenset(_ROOT_FIELDS)
_CONTEXT_FIELDS = tuple(context_kinds())


class _Plan:
    """What to do with each raw key of one event type, decided once instead of per event.

    ``steps`` maps a raw key to (action, canonical name, kind); a key that is not in it
    goes to ``extra``. The decision depends only on the event type and the key.
    """

    __slots__ = ("category", "fields", "key_field", "steps")

    def __init__(self, event_type: str) -> None:
        spec = lookup(event_type)
        self.category = spec.category
        self.key_field = spec.key_field
        kinds = payload_kinds(spec.category)
        self.fields: tuple[str, ...] = tuple(kinds)
        ctx_kinds = context_kinds()
        renames = {**FIELD_RENAMES["*"], **FIELD_RENAMES.get(event_type, {})}
        candidates = {*kinds, *renames, *ctx_kinds, *_CONTEXT_ALIASES, "call_id", "session_id"}
        self.steps: dict[str, tuple[int, str, str]] = {}
        for raw_key in candidates:
            step = self._decide(raw_key, renames, kinds, ctx_kinds)
            if step is not None:
                self.steps[raw_key] = step

    @staticmethod
    def _decide(
        raw_key: str, renames: dict[str, str], kinds: dict[str, str], ctx_kinds: dict[str, str]
    ) -> tuple[int, str, str] | None:
        key = renames.get(raw_key, raw_key)
        if key not in kinds and raw_key in kinds:
            key = raw_key
        if key == "call_id" and "call_id" not in kinds:
            return (_CALL_ID, key, "string")
        if key == "session_id":
            return (_SESSION, key, "string")
        key = _CONTEXT_ALIASES.get(key, key) if key not in kinds else key
        if key in ctx_kinds and key not in kinds:
            if key == "root":
                return (_ROOT, key, "record")
            return (_CONTEXT, key, ctx_kinds[key])
        if key in kinds:
            return (_FIELD, key, kinds[key])
        return None


def _plan_key(event_type: str) -> str | None:
    # Every type outside the catalog and the rename table is handled alike.
    return event_type if event_type in CATALOG or event_type in FIELD_RENAMES else None


class Normalizer:
    """Turns parsed events into canonical ones; holds the occurrence table for event ids."""

    def __init__(self, pbx: str, tracker: OccurrenceTracker | None = None) -> None:
        self.pbx = pbx
        self.tracker = tracker if tracker is not None else OccurrenceTracker()
        self._plans: dict[str | None, _Plan] = {}

    def _plan(self, event_type: str) -> _Plan:
        name = _plan_key(event_type)
        plan = self._plans.get(name)
        if plan is None:
            plan = self._plans[name] = _Plan(event_type if name is not None else "")
        return plan

    def fact(self, parsed: ParsedEvent) -> bytes:
        """The event's fact key (pipelines.identity)."""
        return fact_key(self.pbx, parsed.event_type, parsed.payload)

    def normalize(self, parsed: ParsedEvent, occurrence: int | None = None) -> CanonicalEvent:
        """The canonical event; ``occurrence`` is given for a replayed event already
        received (OccurrenceTracker.align_replay), else the tracker assigns it."""
        event_type = parsed.event_type
        plan = self._plan(event_type)
        steps = plan.steps
        warnings = list(parsed.warnings)

        flat = _flatten(event_type, parsed.payload)
        fields: dict[str, Any] = dict.fromkeys(plan.fields)
        context: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        session_id = None
        for raw_key, value in flat.items():
            step = steps.get(raw_key)
            if step is None:
                extra[raw_key] = value
                continue
            action, key, kind = step
            if action == _FIELD:
                if value is None or (kind == "string" and type(value) is str):
                    fields[key] = value
                    continue
                typed = coerce(value, kind)
                if typed is MISSING:
                    warnings.append(f"{raw_key}: expected {kind}")
                    extra[raw_key] = value
                else:
                    fields[key] = typed
            elif action == _CONTEXT:
                if value is None:
                    continue
                typed = value if kind == "string" and type(value) is str else coerce(value, kind)
                if typed is MISSING:
                    warnings.append(f"{raw_key}: expected {kind}")
                    extra[raw_key] = value
                elif typed is None:
                    continue
                else:
                    current = context.get(key)
                    if current is None:
                        context[key] = typed
                    elif current != typed:
                        extra[raw_key] = value  # an alias and its new name disagree: keep both
            elif action == _ROOT:
                root = self._root(value, warnings, extra)
                if root is not None:
                    context["root"] = root
            elif action == _SESSION:
                if isinstance(value, str) and value:
                    session_id = value
                elif value is not None:
                    extra[raw_key] = value
            elif value is not None and not isinstance(value, str):  # _CALL_ID
                warnings.append("call_id: expected string")
                extra[raw_key] = value

        if "direction" not in context:
            dial_direction = flat.get("dial_direction")
            if isinstance(dial_direction, str):
                context["direction"] = dial_direction
        if session_id is None:
            root_call_id = context.get("root_call_id")
            if isinstance(root_call_id, str):
                session_id = root_call_id

        call_id = flat.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            call_id = parsed.envelope_call_id
        key_value = flat.get(plan.key_field)
        key = (
            key_value
            if isinstance(key_value, str) and key_value
            else (call_id or event_type)
        )

        fkey = fact_key(self.pbx, event_type, parsed.payload)
        if occurrence is None:
            occurrence = self.tracker.assign(
                fkey, parsed.source, parsed.envelope_call_id or "", parsed.instant
            )
        if context:
            complete = dict.fromkeys(_CONTEXT_FIELDS)
            complete.update(context)
        return CanonicalEvent(
            event_id(fkey, occurrence),
            event_type,
            plan.category,
            call_id,
            session_id,
            parsed.event_time or parsed.received_at,
            parsed.received_at,
            parsed.source,
            self.pbx,
            parsed.dialect,
            key,
            occurrence,
            parsed.sequence,
            parsed.envelope_call_id,
            complete if context else None,
            fields,
            canonical_json(extra) if extra else None,
            tuple(warnings),
            fkey,
            parsed.instant,
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
        keep = False
        for name in _ROOT_FIELDS:
            item = value.get(name)
            typed = item if item is None or type(item) is str else coerce(item, "string")
            if typed is MISSING:
                root[name] = None
                keep = True
            else:
                root[name] = typed
        if keep or not _ROOT_FIELD_SET.issuperset(value):
            extra["root"] = value
        return root


def received_now(clock: datetime) -> datetime:
    """Identity helper so callers pass an injected clock's value explicitly."""
    return clock
