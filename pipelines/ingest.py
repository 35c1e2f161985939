"""One raw frame or body to Kafka messages: parse, normalize, encode, or dead-letter.

Every message produced fits ``max_message_bytes``. An event whose encoding is larger (a
huge field in a frame or body) cannot ever be accepted by the producer, so retrying it
would never end: it becomes a dead letter with reason ``event_too_large`` while the other
events of the same body are published as usual. A dead letter too large for the limit
keeps only as many raw bytes as fit, and its detail says how many there were.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import datetime

import orjson

from pipelines.encode import EventEncoder, OutgoingMessage
from pipelines.errors import ParseError, SchemaError
from pipelines.events import CanonicalEvent, DeadLetter
from pipelines.normalize import Normalizer
from pipelines.parse import ParsedEvent, parse_body

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024 - 16 * 1024
"""The largest message (key + value + headers) emitted unless told otherwise: Kafka's
default ``max.request.size`` of 1 MiB, less room for record and batch framing and for
what compression can add to data that does not compress."""

EVENT_TOO_LARGE = "event_too_large"
"""The dead-letter reason of an event whose Kafka message would exceed the limit."""

_DETAIL_MAX_CHARS = 2000


def _event_json(value: dict[str, object]) -> bytes:
    """JSON of one event in its own key order, so a truncated copy still starts with the
    type and the fields that came first (identifiers, as a PBX writes them)."""
    try:
        return orjson.dumps(value, default=str)
    except TypeError:  # integers beyond 64 bits
        return json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")


@dataclass(slots=True)
class Converted:
    """What one body became: messages to publish (events and dead letters), the events,
    and the dead letters. A body may have both: a batch with one oversize event keeps
    the others.

    Treated as immutable (not ``frozen``: that costs on every body converted)."""

    messages: list[OutgoingMessage]
    events: list[CanonicalEvent]
    dead_letters: list[DeadLetter]


class BodyConverter:
    """The ingest path shared by the webhook, the WebSocket client and file replays."""

    def __init__(
        self,
        pbx: str,
        topic_prefix: str = "rwi",
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.pbx = pbx
        self.normalizer = Normalizer(pbx)
        self.encoder = EventEncoder(topic_prefix)
        self.max_message_bytes = max_message_bytes

    def convert(
        self,
        raw: bytes,
        *,
        source: str,
        received_at: datetime,
        max_message_bytes: int | None = None,
    ) -> Converted:
        """Never raises for bad input: garbage becomes a dead-letter message.

        ``max_message_bytes`` (the publisher's limit; the converter's own by default) bounds
        every message returned, dead letters included.
        """
        limit = self.max_message_bytes if max_message_bytes is None else max_message_bytes
        try:
            parsed = parse_body(raw, source=source, received_at=received_at)
        except ParseError as exc:
            return self._dead(raw, source, received_at, exc.reason, exc.detail, limit)
        return self._from_parsed(raw, parsed, source, received_at, limit, None)

    def convert_replay(
        self,
        frames: list[tuple[bytes, datetime]],
        *,
        source: str,
        max_message_bytes: int | None = None,
    ) -> list[Converted]:
        """The frames a 1.0 server replays after ``session.resume`` (no sequence, no
        timestamp), aligned with the events already received live on ``source``
        (OccurrenceTracker.align_replay): a replayed event keeps the id it had, one missed
        during the drop gets a new one. One result per frame, as :meth:`convert` gives."""
        limit = self.max_message_bytes if max_message_bytes is None else max_message_bytes
        parsed: list[list[ParsedEvent] | ParseError] = []
        for raw, received_at in frames:
            try:
                parsed.append(parse_body(raw, source=source, received_at=received_at))
            except ParseError as exc:
                parsed.append(exc)
        fact = self.normalizer.fact
        keys = [fact(item) for items in parsed if isinstance(items, list) for item in items]
        matches = self.normalizer.tracker.align_replay(keys, source, "")
        log.debug("replay of %d events: %d already received, %d new", len(matches),
                 sum(m is not None for m in matches), sum(m is None for m in matches))
        aligned = iter(matches)
        start = self.normalizer.tracker.replay_start
        out = []
        for (raw, received_at), items in zip(frames, parsed, strict=True):
            if isinstance(items, ParseError):
                out.append(self._dead(raw, source, received_at, items.reason, items.detail,
                                      limit))
            else:
                forced = [next(aligned) for _ in items]
                out.append(self._from_parsed(raw, items, source, received_at, limit, forced))
        self.normalizer.tracker.rewrite_history(
            source, "", start, [(e.fact, e.occurrence) for c in out for e in c.events])
        return out

    def _from_parsed(
        self,
        raw: bytes,
        parsed: list[ParsedEvent],
        source: str,
        received_at: datetime,
        limit: int,
        occurrences: list[int | None] | None,
    ) -> Converted:
        normalize, encode = self.normalizer.normalize, self.encoder.encode_event
        messages: list[OutgoingMessage] = []
        events: list[CanonicalEvent] = []
        letters: list[DeadLetter] = []
        for index, item in enumerate(parsed):
            event = normalize(item) if occurrences is None else normalize(
                item, occurrences[index])
            try:
                message = encode(event)
            except SchemaError as exc:
                log.error(
                    "event %s of type %s failed to encode: %s",
                    event.event_id,
                    event.event_type,
                    exc,
                )
                return self._dead(raw, source, received_at, "encode_failed", str(exc), limit)
            if message.size > limit:
                letter = self._too_large(raw, parsed, index, event, message.size, limit)
                letter, dead = self._fit(letter, limit)
                letters.append(letter)
                messages.append(dead)
                continue
            messages.append(message)
            events.append(event)
        return Converted(messages, events, letters)

    def _too_large(
        self,
        raw: bytes,
        parsed: list[ParsedEvent],
        index: int,
        event: CanonicalEvent,
        size: int,
        limit: int,
    ) -> DeadLetter:
        """The dead letter of an event too large to publish.

        A body of one event keeps its own bytes. In a body of several, the raw value is
        that event alone, re-serialized as JSON (its original bytes are not kept apart),
        and the id also names its position, so each oversize event has its own letter
        and a redelivered body maps to the same ones.
        """
        detail = (f"{event.event_type} event {event.event_id} (key {event.key[:200]!r}) "
                  f"encodes to {size} bytes, over the {limit}-byte Kafka message limit")
        if len(parsed) == 1:
            basis = body = raw
        else:
            item = parsed[index]
            body = _event_json({"event_type": item.event_type, **item.payload})
            basis = raw + b"\x00event:%d" % index
            detail += (f"; event {index + 1} of {len(parsed)} in the body, dead-lettered alone "
                       "(the others are published); raw is this event re-serialized as JSON")
        letter = DeadLetter.build(basis, source=event.source, pbx=self.pbx,
                                  received_at=event.received_at, reason=EVENT_TOO_LARGE,
                                  detail=detail)
        log.warning("event dead-lettered: %s", detail)
        return dataclasses.replace(letter, raw=body)

    def _fit(self, letter: DeadLetter, limit: int) -> tuple[DeadLetter, OutgoingMessage]:
        """``letter`` encoded within ``limit``, its raw bytes cut short when they do not fit."""
        message = self.encoder.encode_dead_letter(letter)
        if message.size <= limit:
            return letter, message
        fitted = letter
        keep = original = len(letter.raw)
        detail = (letter.detail or "")[:_DETAIL_MAX_CHARS]
        while message.size > limit and keep > 0:
            keep = max(0, keep - (message.size - limit) - 32)
            fitted = dataclasses.replace(
                letter, raw=letter.raw[:keep],
                detail=f"{detail}; raw truncated to its first {keep} of {original} bytes")
            message = self.encoder.encode_dead_letter(fitted)
        return fitted, message

    def _dead(
        self,
        raw: bytes,
        source: str,
        received_at: datetime,
        reason: str,
        detail: str | None,
        limit: int,
    ) -> Converted:
        letter = DeadLetter.build(
            raw, source=source, pbx=self.pbx, received_at=received_at, reason=reason, detail=detail
        )
        letter, message = self._fit(letter, limit)
        return Converted([message], [], [letter])
