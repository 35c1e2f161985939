"""Canonical events and dead letters to Kafka messages: topic, key, Avro value, headers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipelines import avro
from pipelines.avro_writer import compile_writer
from pipelines.catalog import CATEGORY_SCHEMA, DEAD_LETTER_SCHEMA, dead_letter_topic, topic_for
from pipelines.errors import SchemaError
from pipelines.events import CanonicalEvent, DeadLetter
from pipelines.identity import OCCURRENCE_HEADER, occurrence_note

Headers = list[tuple[str, bytes]]

# Envelope fields of a CanonicalEvent, read as attributes by the event writers.
_META_ATTRS = frozenset(
    {
        "event_id", "event_type", "category", "call_id", "session_id", "event_time",
        "received_at", "source", "pbx", "dialect", "sequence", "envelope_call_id",
        "occurrence", "warnings",
    }
)
_ENCODED_CAP = 4096  # distinct header values remembered (event types, sources, dialects)
# Header names every event message carries (their values vary).
_HEADER_NAME_BYTES = len("rwi.source") + len("rwi.dialect") + len("rwi.event_type")


@dataclass(slots=True)
class OutgoingMessage:
    """One Kafka message; treated as immutable (not ``frozen``: one is built per event)."""

    topic: str
    key: bytes
    value: bytes
    headers: Headers
    size: int = field(default=-1, repr=False, compare=False)
    """Bytes counted against the in-flight cap: key, value and headers (computed if < 0)."""

    def __post_init__(self) -> None:
        if self.size < 0:
            size = len(self.key) + len(self.value)
            for name, value in self.headers:
                size += len(name) + len(value)
            self.size = size


def _event_access(parent: str, name: str, path: str) -> str:
    """Where :meth:`CanonicalEvent.to_record` would take each field from."""
    if path == "meta":
        return "record"  # meta's fields are the event's own attributes
    if path.startswith("meta.") and path.count(".") == 1:
        if name not in _META_ATTRS:
            raise ValueError(f"EventMeta field {name} is not a CanonicalEvent attribute")
        return f"record.{name}"
    if path in ("context", "extra"):
        return f"record.{name}"
    if "." not in path and "[" not in path and "{" not in path:
        return f"fields[{name!r}]"  # a payload field of the category
    return f"{parent}[{name!r}]"


def compile_event_writer(schema: avro.AvroSchema) -> Callable[[CanonicalEvent, bytearray], None]:
    """A writer of a category schema reading a CanonicalEvent directly.

    Its output equals ``schema.writer(event.to_record(), out)`` byte for byte, without
    building the record's dicts first.
    """
    plain = avro.plain_schema(schema)
    return compile_writer(plain, access=_event_access, preamble=("fields = record.fields",))


class EventEncoder:
    """Encodes for one topic prefix; schemas are loaded once."""

    def __init__(self, topic_prefix: str = "rwi") -> None:
        self.prefix = topic_prefix
        self._schemas = {c: avro.load(name) for c, name in CATEGORY_SCHEMA.items()}
        self._dead = avro.load(DEAD_LETTER_SCHEMA)
        self._topics = {c: topic_for(c, topic_prefix) for c in CATEGORY_SCHEMA}
        self._dead_topic = dead_letter_topic(topic_prefix)
        # Per category: topic, value prefix (framing + fingerprint), writer, schema header,
        # and the header bytes every message of it has.
        self._plans: dict[str, tuple[str, bytes, Callable[[Any, bytearray], None],
                                     tuple[str, bytes], int]] = {}
        for category, schema in self._schemas.items():
            header = ("rwi.schema", schema.fingerprint_hex.encode())
            self._plans[category] = (
                self._topics[category],
                avro.SINGLE_OBJECT_MAGIC + schema.fingerprint,
                compile_event_writer(schema),
                header,
                len(header[0]) + len(header[1]) + _HEADER_NAME_BYTES,
            )
        self._encoded: dict[str, bytes] = {}
        # Arrival numbers of deliveries without an instant: from the start time in ns, so a
        # later run's are larger (pipelines.identity.occurrence_note).
        self._arrival = time.time_ns()

    def schemas(self) -> list[avro.AvroSchema]:
        return [*self._schemas.values(), self._dead]

    def store(self) -> avro.SchemaStore:
        return avro.SchemaStore(self.schemas())

    def _bytes(self, text: str) -> bytes:
        value = self._encoded.get(text)
        if value is None:
            value = text.encode("utf-8", "surrogatepass")
            if len(self._encoded) < _ENCODED_CAP:
                self._encoded[text] = value
        return value

    def encode_event(self, event: CanonicalEvent) -> OutgoingMessage:
        topic, prefix, writer, schema_header, fixed = self._plans[event.category]
        out = bytearray(prefix)
        try:
            writer(event, out)
        except (ValueError, TypeError, KeyError, AttributeError, UnicodeError) as exc:
            name = self._schemas[event.category].name
            raise SchemaError(f"record does not match {name}: {exc!r}") from exc
        encoded = self._bytes
        key = event.key.encode("utf-8", "surrogatepass")
        source, dialect, event_type = (
            encoded(event.source), encoded(event.dialect), encoded(event.event_type))
        headers = [
            schema_header,
            ("rwi.source", source),
            ("rwi.dialect", dialect),
            ("rwi.event_type", event_type),
        ]
        size = len(key) + len(out) + fixed + len(source) + len(dialect) + len(event_type)
        if event.fact:
            arrival = None
            if event.instant is None:  # its place in the path's history (occurrence_note)
                arrival = self._arrival
                self._arrival += 1
            note = occurrence_note(event.fact, event.occurrence, event.source,
                                   event.envelope_call_id or "", event.instant, arrival)
            headers.append((OCCURRENCE_HEADER, note))
            size += len(OCCURRENCE_HEADER) + len(note)
        return OutgoingMessage(topic, key, bytes(out), headers, size)

    def encode_dead_letter(self, letter: DeadLetter) -> OutgoingMessage:
        return OutgoingMessage(
            topic=self._dead_topic,
            key=letter.dead_letter_id.encode(),
            value=avro.encode(self._dead, letter.to_record()),
            headers=[
                ("rwi.schema", self._dead.fingerprint_hex.encode()),
                ("rwi.source", letter.source.encode()),
                ("rwi.reason", letter.reason.encode()),
            ],
        )
