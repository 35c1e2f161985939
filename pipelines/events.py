"""The canonical event (DESIGN 3.1) and the dead-letter record, as in-process values."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson


@dataclass(slots=True)
class CanonicalEvent:
    """One accepted event, typed against its category's Avro schema.

    Treated as immutable once built. Not declared ``frozen``: a frozen dataclass's
    ``__init__`` costs ~8x more, and one is built per ingested event.
    """

    event_id: str
    event_type: str
    category: str
    call_id: str | None
    session_id: str | None
    event_time: datetime
    received_at: datetime
    source: str
    pbx: str
    dialect: str
    key: str
    occurrence: int = 0
    sequence: int | None = None
    envelope_call_id: str | None = None
    context: dict[str, Any] | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    extra: str | None = None
    warnings: tuple[str, ...] = ()
    fact: bytes = b""  # the identity's fact key (pipelines.identity), kept in a Kafka header
    instant: str | None = None  # the dispatch instant the occurrence was matched on

    def to_record(self) -> dict[str, Any]:
        """The value as its category schema's record (datetimes become timestamp-micros)."""
        record: dict[str, Any] = {
            "meta": {
                "event_id": self.event_id,
                "event_type": self.event_type,
                "category": self.category,
                "call_id": self.call_id,
                "session_id": self.session_id,
                "event_time": self.event_time,
                "received_at": self.received_at,
                "source": self.source,
                "pbx": self.pbx,
                "dialect": self.dialect,
                "sequence": self.sequence,
                "envelope_call_id": self.envelope_call_id,
                "occurrence": self.occurrence,
                "warnings": list(self.warnings),
            },
            "context": self.context,
            "extra": self.extra,
        }
        record.update(self.fields)
        return record


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Raw bytes that could not become an event, and why."""

    dead_letter_id: str
    received_at: datetime
    source: str
    pbx: str
    reason: str
    detail: str | None
    raw: bytes

    @classmethod
    def build(
        cls,
        raw: bytes,
        *,
        source: str,
        pbx: str,
        received_at: datetime,
        reason: str,
        detail: str | None = None,
    ) -> DeadLetter:
        digest = hashlib.sha256(source.encode() + b"\x00" + raw).hexdigest()[:32]
        return cls(digest, received_at, source, pbx, reason, detail, raw)

    def to_record(self) -> dict[str, Any]:
        return {
            "dead_letter_id": self.dead_letter_id,
            "received_at": self.received_at,
            "source": self.source,
            "pbx": self.pbx,
            "reason": self.reason,
            "detail": self.detail,
            "raw": self.raw,
        }


def canonical_json_bytes(value: Any) -> bytes:
    """Stable JSON (sorted keys, no spaces) as UTF-8 bytes."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)
    except TypeError:  # integers beyond 64 bits: the exact, slower path
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
        )
        return text.encode("utf-8", "surrogatepass")


def canonical_json(value: Any) -> str:
    """Stable JSON text used for ``extra`` and JSON-typed fields."""
    return canonical_json_bytes(value).decode("utf-8", "surrogatepass")
