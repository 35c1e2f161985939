"""Deterministic event ids.

Rule: an event's identity is (pbx, fact type, fact content, occurrence).
- *Fact content* is the event's own payload without the keys that depend on how it was
  delivered (call context added by enrichment, ``session_id``, ``root``, origin IPs), as
  canonical JSON. The resume cache holds un-enriched events and the webhook enriched ones,
  so both must hash alike. ``call_incoming`` and ``call_created`` are one fact type.
- *Occurrence* tells apart genuinely repeated identical facts (``call_ringing`` on every
  queue retry carries the same payload). A delivery with a dispatch instant (the webhook
  ``timestamp``, the resume cache's ``timestamp``, a 1.0 ``sequence``) that was seen before
  is the same occurrence: a redelivery. Otherwise a delivery joins the earliest occurrence
  not yet delivered on the same (channel, target); the target is the webhook envelope
  ``call_id``, so the 2-3 by-design deliveries of ``call_bridged`` or supervisor events to
  different legs collapse into one event, while a second ``call_ringing`` to the same call
  becomes occurrence 1. Live WebSocket frames and webhook bodies of the same event meet on
  the same occurrence because both channels carry one call's events in dispatch order.
The occurrence table is bounded (LRU by fact). It survives restarts through Kafka: every
message carries an ``rwi.occurrence`` header (:func:`occurrence_note`: fact key, occurrence,
channel, target, instant), and a starting ingest service reads the recent tail of its topics
back into the table (:mod:`pipelines.identity_restore`) before it accepts events. Without
that, a restarted service would count each repeated fact from 0 again and give a new
repetition the id of an old one. A fact whose repetitions are older than that tail is
counted from 0 again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pipelines.catalog import ALIASES
from pipelines.events import canonical_json_bytes

# Keys whose presence or value depends on the delivery path, not on the fact.
DELIVERY_KEYS = frozenset(
    {
        "session_id",
        "caller",
        "callee",
        "caller_name",
        "callee_name",
        "ani",
        "dnis",
        "direction",
        "trunk",
        "app_id",
        "routing_target",
        "agent_id",
        "agent_name",
        "root",
        "root_call_id",
        "src_ip",
        "client_ip",
        "event_type",
    }
)


@lru_cache(maxsize=4096)
def _fact_prefix(pbx: str, event_type: str) -> bytes:
    return pbx.encode() + b"\x00" + ALIASES.get(event_type, event_type).encode() + b"\x00"


def fact_key(pbx: str, event_type: str, payload: Mapping[str, Any]) -> bytes:
    """Hash of what the event says, independent of delivery path and enrichment."""
    fact = {
        k: v for k, v in payload.items() if k not in DELIVERY_KEYS and not k.startswith("envelope_")
    }
    return hashlib.sha256(_fact_prefix(pbx, event_type) + canonical_json_bytes(fact)).digest()


OCCURRENCE_HEADER = "rwi.occurrence"
_KEY_BYTES = 32


def occurrence_note(key: bytes, occurrence: int, channel: str, target: str,
                    instant: str | None) -> bytes:
    """The ``rwi.occurrence`` header value: enough to replay one ``assign`` decision."""
    tail = "\x00".join((channel, target, instant if instant is not None else ""))
    flag = b"\x01" if instant is not None else b"\x00"
    return key + occurrence.to_bytes(4, "big") + flag + tail.encode("utf-8", "surrogatepass")


def parse_occurrence_note(note: bytes) -> tuple[bytes, int, str, str, str | None] | None:
    """``(key, occurrence, channel, target, instant)``, or None for a malformed header."""
    if len(note) < _KEY_BYTES + 5:
        return None
    key, occurrence = note[:_KEY_BYTES], int.from_bytes(note[_KEY_BYTES:_KEY_BYTES + 4], "big")
    has_instant = note[_KEY_BYTES + 4] == 1
    parts = note[_KEY_BYTES + 5:].decode("utf-8", "surrogatepass").split("\x00")
    if len(parts) != 3:
        return None
    channel, target, instant = parts
    return key, occurrence, channel, target, instant if has_instant else None


def event_id(key: bytes, occurrence: int) -> str:
    """32 hex characters from the fact key and the occurrence number."""
    return hashlib.sha256(key + occurrence.to_bytes(8, "big")).hexdigest()[:32]


@dataclass(slots=True)
class _Fact:
    """Occurrences of one fact: which instants and (channel, target) deliveries each has."""

    count: int = 0
    by_instant: dict[str, int] = field(default_factory=dict)
    delivered: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    cursor: dict[tuple[str, str], int] = field(default_factory=dict)


class OccurrenceTracker:
    """Assigns occurrence numbers to deliveries of identical facts (see module docstring).

    Each step is O(1) amortized: per (channel, target) a cursor skips occurrences that
    delivery path has already seen, so a fact repeated n times costs O(n) in all.
    """

    def __init__(self, max_facts: int = 1_000_000) -> None:
        self._facts: OrderedDict[bytes, _Fact] = OrderedDict()
        self._max = max_facts

    def __len__(self) -> int:
        return len(self._facts)

    def assign(self, key: bytes, channel: str, target: str, instant: str | None) -> int:
        fact = self._facts.get(key)
        if fact is None:
            fact = _Fact()
            self._facts[key] = fact
            if len(self._facts) > self._max:
                self._facts.popitem(last=False)
        else:
            self._facts.move_to_end(key)
        delivery = (channel, target)
        seen = fact.delivered.get(delivery)
        if seen is None:
            seen = fact.delivered[delivery] = set()
        chosen = fact.by_instant.get(instant) if instant is not None else None
        if chosen is None:
            chosen = fact.cursor.get(delivery, 0)
            while chosen in seen:
                chosen += 1
            fact.cursor[delivery] = chosen + 1
            if chosen >= fact.count:
                fact.count = chosen + 1
        seen.add(chosen)
        if instant is not None:
            fact.by_instant[instant] = chosen
        return chosen

    def restore(self, key: bytes, occurrence: int, channel: str, target: str,
                instant: str | None) -> None:
        """Replay a decision :meth:`assign` made before a restart (read back from Kafka).

        Idempotent and order-insensitive: the delivery path has seen ``occurrence``, the
        instant maps to it, and the fact has at least ``occurrence + 1`` repetitions. The
        per-path cursor is left alone; ``assign`` skips whatever the path has seen.
        """
        fact = self._facts.get(key)
        if fact is None:
            fact = _Fact()
            self._facts[key] = fact
            if len(self._facts) > self._max:
                self._facts.popitem(last=False)
        else:
            self._facts.move_to_end(key)
        fact.delivered.setdefault((channel, target), set()).add(occurrence)
        if instant is not None:
            fact.by_instant[instant] = occurrence
        if occurrence >= fact.count:
            fact.count = occurrence + 1
