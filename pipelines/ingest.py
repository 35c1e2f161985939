"""One raw frame or body to Kafka messages: parse, normalize, encode, or dead-letter."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from pipelines.encode import EventEncoder, OutgoingMessage
from pipelines.errors import ParseError, SchemaError
from pipelines.events import CanonicalEvent, DeadLetter
from pipelines.normalize import Normalizer
from pipelines.parse import parse_body

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Converted:
    """What one body became: messages to publish, and how many were dead letters.

    Treated as immutable (not ``frozen``: that costs on every body converted)."""

    messages: list[OutgoingMessage]
    events: list[CanonicalEvent]
    dead_letters: list[DeadLetter]


class BodyConverter:
    """The ingest path shared by the webhook, the WebSocket client and file replays."""

    def __init__(self, pbx: str, topic_prefix: str = "rwi") -> None:
        self.pbx = pbx
        self.normalizer = Normalizer(pbx)
        self.encoder = EventEncoder(topic_prefix)

    def convert(self, raw: bytes, *, source: str, received_at: datetime) -> Converted:
        """Never raises for bad input: garbage becomes a dead-letter message."""
        try:
            parsed = parse_body(raw, source=source, received_at=received_at)
        except ParseError as exc:
            return self._dead(raw, source, received_at, exc.reason, exc.detail)
        messages: list[OutgoingMessage] = []
        events: list[CanonicalEvent] = []
        for item in parsed:
            event = self.normalizer.normalize(item)
            try:
                messages.append(self.encoder.encode_event(event))
            except SchemaError as exc:
                log.error(
                    "event %s of type %s failed to encode: %s",
                    event.event_id,
                    event.event_type,
                    exc,
                )
                return self._dead(raw, source, received_at, "encode_failed", str(exc))
            events.append(event)
        return Converted(messages, events, [])

    def _dead(
        self, raw: bytes, source: str, received_at: datetime, reason: str, detail: str | None
    ) -> Converted:
        letter = DeadLetter.build(
            raw, source=source, pbx=self.pbx, received_at=received_at, reason=reason, detail=detail
        )
        return Converted([self.encoder.encode_dead_letter(letter)], [], [letter])
