"""Canonical events and dead letters to Kafka messages: topic, key, Avro value, headers."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines import avro
from pipelines.catalog import CATEGORY_SCHEMA, DEAD_LETTER_SCHEMA, dead_letter_topic, topic_for
from pipelines.events import CanonicalEvent, DeadLetter

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    topic: str
    key: bytes
    value: bytes
    headers: Headers

    @property
    def size(self) -> int:
        return len(self.key) + len(self.value) + sum(len(k) + len(v) for k, v in self.headers)


class EventEncoder:
    """Encodes for one topic prefix; schemas are loaded once."""

    def __init__(self, topic_prefix: str = "rwi") -> None:
        self.prefix = topic_prefix
        self._schemas = {c: avro.load(name) for c, name in CATEGORY_SCHEMA.items()}
        self._dead = avro.load(DEAD_LETTER_SCHEMA)
        self._topics = {c: topic_for(c, topic_prefix) for c in CATEGORY_SCHEMA}
        self._dead_topic = dead_letter_topic(topic_prefix)

    def schemas(self) -> list[avro.AvroSchema]:
        return [*self._schemas.values(), self._dead]

    def store(self) -> avro.SchemaStore:
        return avro.SchemaStore(self.schemas())

    def encode_event(self, event: CanonicalEvent) -> OutgoingMessage:
        schema = self._schemas[event.category]
        return OutgoingMessage(
            topic=self._topics[event.category],
            key=event.key.encode("utf-8", "surrogatepass"),
            value=avro.encode(schema, event.to_record()),
            headers=[
                ("rwi.schema", schema.fingerprint_hex.encode()),
                ("rwi.source", event.source.encode()),
                ("rwi.dialect", event.dialect.encode()),
                ("rwi.event_type", event.event_type.encode("utf-8", "surrogatepass")),
            ],
        )

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
