"""Sample bodies for every catalog type in each dialect it exists in, built from the schemas.

Each payload fills every field its category schema declares (plus context), so a round trip
exercises every typed column. Values are deterministic per (event type, field).
"""

from __future__ import annotations

import json
from typing import Any

from pipelines.catalog import CATALOG, EventSpec
from pipelines.fieldtypes import context_kinds, payload_kinds
from pipelines.normalize import FIELD_RENAMES


def _renamed_back(event_type: str) -> dict[str, str]:
    renames = {**FIELD_RENAMES["*"], **FIELD_RENAMES.get(event_type, {})}
    return {new: old for old, new in renames.items()}


def _value(kind: str, name: str, n: int) -> Any:
    if kind == "string":
        return f"{name}-{n}"
    if kind == "long":
        return 1000 + n
    if kind == "boolean":
        return n % 2 == 0
    if kind == "array":
        return [f"{name}-a{n}", f"{name}-b{n}"]
    if kind == "map":
        return {"X-Tenant": f"corp-{n}"}
    if kind == "json":
        return {"k": n, "nested": [1, "two"]}
    raise AssertionError(kind)


def renames_of(spec: EventSpec) -> set[str]:
    """Schema fields this type fills under another own name (or only this type fills)."""
    return set(_renamed_back(spec.event_type))


def example_payload(spec: EventSpec, n: int = 1) -> dict[str, Any]:
    """A flat event payload as the server would serialise it (own field names)."""
    payload: dict[str, Any] = {"call_id": f"call-{spec.event_type}-{n}"}
    for name, kind in payload_kinds(spec.category).items():
        if name in ("trigger_type", "trigger_detail") and spec.event_type == "ivr_step_trace":
            continue
        own = _renamed_back(spec.event_type).get(name, name)
        if own != name and name not in renames_of(spec):
            continue
        payload[own] = _value(kind, name, n)
    if spec.event_type == "ivr_step_trace":
        payload["trigger"] = {"type": "dtmf", "detail": {"digit": "1"}}
    for name, kind in context_kinds().items():
        if name != "root":
            payload.setdefault(name, _value(kind, name, n))
    payload[spec.key_field] = payload.get(spec.key_field) or f"{spec.key_field}-{n}"
    if isinstance(payload[spec.key_field], int):
        payload[spec.key_field] = str(payload[spec.key_field])
    return payload


def current_body(spec: EventSpec, n: int = 1) -> bytes:
    payload = example_payload(spec, n)
    payload["session_id"] = f"sess-{n}"
    if spec.event_type == "ivr_step_trace":
        payload["session_id"] = "ivr-session-1"
    payload["root"] = {
        "call_id": payload["call_id"],
        "caller": "sip:1001@pbx",
        "start_time": "2026-08-22T15:33:01.900123456+00:00",
    }
    event = {"event_type": spec.event_type, **payload}
    if spec.event_type == "test":
        event = {"test": {"message": "RustPBX RWI webhook test"}}
    body = {
        "rwi": "1.0",
        "timestamp": f"2026-08-22T15:33:{10 + n % 40:02d}.123456789+00:00",
        "call_id": payload["call_id"],
        "event_type": spec.event_type,
        "event": event,
    }
    return json.dumps(body).encode()


def v1_body(spec: EventSpec, n: int = 1) -> bytes:
    payload = example_payload(spec, n)
    body = {
        "rwi": "1.0",
        "sequence": 100 + n,
        "timestamp": 1716212345 + n,
        "call_id": payload["call_id"],
        "event_type": spec.event_type,
        "event": payload,
    }
    return json.dumps(body).encode()


def all_examples() -> list[tuple[str, str, bytes]]:
    """(event type, dialect, body) for every type in every dialect it exists in."""
    out: list[tuple[str, str, bytes]] = []
    for n, spec in enumerate(CATALOG.values()):
        if spec.in_v1_0:
            out.append((spec.event_type, "v1.0", v1_body(spec, n)))
        if spec.in_current or spec.cc_addon:
            out.append((spec.event_type, "current", current_body(spec, n)))
    return out
