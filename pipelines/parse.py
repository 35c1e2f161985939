"""Tolerant parsing of every frame and body shape RustPBX has sent.

Shapes accepted (see ``rwi-wire-protocol.md`` and the 1.0 reference):
- webhook envelope ``{"rwi", "timestamp", "call_id", "event_type", "event", ["sequence"]}``
  with ``event`` flat, or nested under its type name (``{"call_ringing": {...}}``, ``test``);
- flat WebSocket frames with ``event_type`` (today's server);
- wrapped frames ``{"call_ringing": {...}}`` with or without ``"rwi"`` (1.0 era);
- the ``session.resume`` reply whose ``data.events`` entries nest fields under ``payload``;
- a JSON array of any of these.
Anything else raises :class:`ParseError`; the caller dead-letters the raw bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from pipelines.catalog import CATALOG
from pipelines.errors import ParseError
from pipelines.timeparse import parse_timestamp

MAX_EVENTS_PER_BODY = 10_000
# orjson reads integers beyond 64 bits as floats; bodies with a run of 19 or more digits take
# the exact (slower) path. Found by mapping every digit to "0" and everything else to "."
# (bytes.translate), then a substring search: several times faster than a regex scan.
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x2E for b in range(256))
_HUGE_RUN = b"0" * 19
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,127}$")
_ENVELOPE_KEYS = {"rwi", "timestamp", "call_id", "event_type", "event", "sequence"}
# Keys that make a type-less flat object recognisably an RWI event (1.0 WS frames).
_ID_KEYS = ("call_id", "conf_id", "agent_id", "queue_id", "operation_id", "leg_a")


@dataclass(slots=True)
class ParsedEvent:
    """One event lifted out of a frame, before normalization (treated as immutable)."""

    event_type: str
    payload: dict[str, Any]
    dialect: str
    source: str
    received_at: datetime
    envelope_call_id: str | None = None
    event_time: datetime | None = None
    instant: str | None = (
        None  # the dispatch instant as sent, normalized; None if the frame has none
    )
    sequence: int | None = None
    warnings: tuple[str, ...] = ()


def parse_body(raw: bytes | str, *, source: str, received_at: datetime) -> list[ParsedEvent]:
    """Parse one HTTP body or WebSocket frame into events (possibly none, for command acks)."""
    if type(raw) is bytes:
        data = raw
    else:
        data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if not data or data.isspace():
        raise ParseError("empty_body")
    try:
        if _HUGE_RUN in data.translate(_DIGITS_ONLY):
            doc = _exact_loads(data)
        else:
            doc = orjson.loads(data)
    except (orjson.JSONDecodeError, ValueError, RecursionError) as exc:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as bad_utf8:
            raise ParseError("invalid_utf8", str(bad_utf8)) from exc
        raise ParseError("invalid_json", str(exc)[:200]) from exc
    return parse_document(doc, source=source, received_at=received_at)


def _exact_loads(data: bytes) -> Any:
    return json.loads(data.decode("utf-8"))


def parse_document(doc: Any, *, source: str, received_at: datetime) -> list[ParsedEvent]:
    """Parse an already-decoded JSON document."""
    if isinstance(doc, list):
        if not doc:
            raise ParseError("empty_array")
        if len(doc) > MAX_EVENTS_PER_BODY:
            raise ParseError("too_many_events", f"{len(doc)} > {MAX_EVENTS_PER_BODY}")
        out: list[ParsedEvent] = []
        for item in doc:
            out.extend(parse_document(item, source=source, received_at=received_at))
        return out
    if not isinstance(doc, dict):
        raise ParseError("not_an_object", f"top-level JSON is {type(doc).__name__}")
    if isinstance(doc.get("type"), str) and doc["type"].startswith("command_"):
        return _parse_command_reply(doc, received_at)
    if isinstance(doc.get("event"), dict) and ("event_type" in doc or "timestamp" in doc):
        return [_parse_envelope(doc, source, received_at)]
    if isinstance(doc.get("event"), str) and isinstance(doc.get("data"), dict):
        return [_parse_named_data(doc, source, received_at)]
    return [_parse_frame(doc, source, received_at)]


def _type_name(value: Any, where: str) -> str:
    if type(value) is str and value in CATALOG:  # every catalog name fits the pattern
        return value
    if not isinstance(value, str) or not _TYPE_NAME.match(value):
        raise ParseError("bad_event_type", f"{where} is {str(value)[:80]!r}")
    return value


def _instant(
    raw_ts: Any, sequence: int | None, warnings: list[str]
) -> tuple[datetime | None, str | None]:
    if raw_ts is None:
        return None, None if sequence is None else f"seq:{sequence}"
    parsed = parse_timestamp(raw_ts)
    if parsed is None:
        warnings.append(f"timestamp: unreadable value {str(raw_ts)[:60]!r}")
        return None, None if sequence is None else f"seq:{sequence}"
    when, normalized = parsed
    if sequence is not None:
        normalized = f"seq:{sequence}@{normalized}"
    return when, normalized


def _sequence(value: Any, warnings: list[str]) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    warnings.append(f"sequence: unreadable value {str(value)[:40]!r}")
    return None


def _unwrap(event: dict[str, Any], event_type: str) -> dict[str, Any]:
    """``{"<type>": {...}}`` (1.0 webhook example, console test) to the inner object."""
    inner = event.get(event_type)
    if len(event) == 1 and isinstance(inner, dict):
        return inner
    return event


def _parse_envelope(doc: dict[str, Any], source: str, received_at: datetime) -> ParsedEvent:
    warnings: list[str] = []
    event = doc["event"]
    inner_type = event.get("event_type")
    if "event_type" in doc:
        event_type = _type_name(doc["event_type"], "envelope event_type")
    elif len(event) == 1 and isinstance(next(iter(event.values())), dict):
        event_type = _type_name(next(iter(event)), "event wrapper key")
    else:
        event_type = _type_name(inner_type, "event.event_type")
    unwrapped = _unwrap(event, event_type)
    wrapped = unwrapped is not event
    payload = dict(unwrapped)
    if payload.get("event_type") == event_type:
        del payload["event_type"]
    sequence = _sequence(doc.get("sequence"), warnings)
    raw_ts = doc.get("timestamp")
    when, instant = _instant(raw_ts, sequence, warnings)
    legacy = (
        sequence is not None
        or isinstance(raw_ts, int | float)
        or (wrapped and event_type != "test")
    )
    env_call = doc.get("call_id")
    for key in doc.keys() - _ENVELOPE_KEYS:
        payload.setdefault(f"envelope_{key}", doc[key])
    return ParsedEvent(
        event_type=event_type,
        payload=payload,
        dialect="v1.0" if legacy else "current",
        source=source,
        received_at=received_at,
        envelope_call_id=env_call if isinstance(env_call, str) and env_call else None,
        event_time=when,
        instant=instant,
        sequence=sequence,
        warnings=tuple(warnings),
    )


def _parse_named_data(doc: dict[str, Any], source: str, received_at: datetime) -> ParsedEvent:
    """``{"event": "call.ringing", "data": {...}}`` as some RustPBX docs describe it."""
    event_type = _type_name(doc["event"].replace(".", "_").lower(), "event")
    payload = dict(doc["data"])
    payload.pop("event_type", None)
    warnings: list[str] = []
    when, instant = _instant(doc.get("timestamp"), None, warnings)
    return ParsedEvent(
        event_type, payload, "v1.0", source, received_at, None, when, instant, None, tuple(warnings)
    )


def _parse_frame(doc: dict[str, Any], source: str, received_at: datetime) -> ParsedEvent:
    if "event_type" in doc:
        event_type = _type_name(doc["event_type"], "event_type")
        payload = dict(doc)
        del payload["event_type"]
        return ParsedEvent(event_type, payload, "current", source, received_at)
    keys = [k for k in doc if k != "rwi"]
    if len(keys) == 1 and isinstance(doc[keys[0]], dict):
        event_type = _type_name(keys[0], "wrapper key")
        payload = dict(doc[keys[0]])
        inner = payload.get("event_type")
        if inner == event_type:
            del payload["event_type"]
        return ParsedEvent(event_type, payload, "v1.0", source, received_at)
    if any(isinstance(doc.get(k), str) for k in _ID_KEYS):
        # A 1.0 flat frame: the type was implied by the subscription and is not on the wire.
        return ParsedEvent(
            "unknown",
            dict(doc),
            "v1.0",
            source,
            received_at,
            warnings=("event_type: frame carries no type",),
        )
    raise ParseError("no_event_type", f"keys {sorted(doc)[:10]}")


def _parse_command_reply(doc: dict[str, Any], received_at: datetime) -> list[ParsedEvent]:
    data = doc.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        return []  # an acknowledgement, not an event
    out = []
    for entry in data["events"]:
        out.append(_parse_replay_entry(entry, received_at))
    return out


def _parse_replay_entry(entry: Any, received_at: datetime) -> ParsedEvent:
    if not isinstance(entry, dict):
        raise ParseError("bad_resume_entry", f"entry is {type(entry).__name__}")
    warnings: list[str] = []
    event = entry.get("event")
    if isinstance(event, dict) and isinstance(event.get("payload"), dict):
        payload = dict(event["payload"])
        event_type = _type_name(event.get("event_type") or payload.get("event_type"), "event_type")
    elif isinstance(event, dict):
        parsed = parse_document(event, source="ws_resume", received_at=received_at)[0]
        payload, event_type = dict(parsed.payload), parsed.event_type
    else:
        raise ParseError("bad_resume_entry", "entry has no event object")
    if payload.get("event_type") == event_type:
        del payload["event_type"]
    sequence = _sequence(entry.get("sequence"), warnings)
    when, instant = _instant(entry.get("timestamp"), sequence, warnings)
    env_call = entry.get("call_id")
    return ParsedEvent(
        event_type=event_type,
        payload=payload,
        dialect="current" if sequence is None else "v1.0",
        source="ws_resume",
        received_at=received_at,
        envelope_call_id=env_call if isinstance(env_call, str) and env_call else None,
        event_time=when,
        instant=instant,
        sequence=sequence,
        warnings=tuple(warnings),
    )


def is_known(event_type: str) -> bool:
    return event_type in CATALOG
