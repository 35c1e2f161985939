"""Events too large for one Kafka message: dead-lettered (never retried forever, never
dropped), the dead letter itself within the limit, the rest of a batch still published."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines import avro
from pipelines.catalog import dead_letter_topic
from pipelines.encode import EventEncoder
from pipelines.ingest import DEFAULT_MAX_MESSAGE_BYTES, EVENT_TOO_LARGE, BodyConverter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
NOW = datetime(2026, 8, 22, 15, 40, tzinfo=UTC)
TEMPLATE = json.loads((FIXTURES / "webhook_current.jsonl").read_text().splitlines()[1])
STORE = EventEncoder().store()


def envelope(call_id: str, blob: int = 0) -> dict[str, object]:
    """A webhook envelope; ``blob`` characters of an unknown field make it as large as wanted."""
    event = dict(TEMPLATE["event"], call_id=call_id)
    if blob:
        event["blob"] = "x" * blob
    return dict(TEMPLATE, call_id=call_id, event=event)


def body(call_id: str, blob: int = 0) -> bytes:
    return json.dumps(envelope(call_id, blob)).encode()


def decode(value: bytes) -> dict[str, object]:
    record: dict[str, object] = avro.decode(value, STORE).record
    return record


def test_an_event_over_the_limit_becomes_a_dead_letter_that_fits() -> None:
    raw = body("big-1", blob=2 * 1024 * 1024)
    converted = BodyConverter("pbx").convert(raw, source="ws", received_at=NOW)
    assert converted.events == []
    [message] = converted.messages
    [letter] = converted.dead_letters
    assert message.topic == dead_letter_topic("rwi")
    assert message.size <= DEFAULT_MAX_MESSAGE_BYTES
    record = decode(message.value)
    assert record["reason"] == EVENT_TOO_LARGE == letter.reason
    kept = record["raw"]
    assert isinstance(kept, bytes) and 0 < len(kept) < len(raw) and raw.startswith(kept)
    detail = str(record["detail"])
    assert f"of {len(raw)} bytes" in detail and "call_ringing" in detail
    assert f"{DEFAULT_MAX_MESSAGE_BYTES}-byte" in detail
    # A redelivery maps to the same dead letter.
    again = BodyConverter("pbx").convert(raw, source="ws", received_at=NOW).dead_letters[0]
    assert again.dead_letter_id == letter.dead_letter_id


def test_the_limit_is_given_per_call() -> None:
    raw = body("mid-1", blob=6000)
    converter = BodyConverter("pbx")
    assert converter.convert(raw, source="webhook", received_at=NOW).dead_letters == []
    converted = converter.convert(raw, source="webhook", received_at=NOW,
                                  max_message_bytes=5000)
    [letter] = converted.dead_letters
    assert letter.reason == EVENT_TOO_LARGE and converted.events == []
    # The letter (about as large as the event) does not fit 5000 either: cut to fit.
    assert converted.messages[0].size <= 5000
    record = decode(converted.messages[0].value)
    assert raw.startswith(record["raw"]) and "truncated" in str(record["detail"])


def test_a_batch_with_one_oversize_event_keeps_the_others() -> None:
    raw = json.dumps([envelope("a-1"), envelope("big-2", blob=20_000),
                      envelope("c-3")]).encode()
    converted = BodyConverter("pbx").convert(raw, source="webhook", received_at=NOW,
                                             max_message_bytes=8000)
    assert [e.call_id for e in converted.events] == ["a-1", "c-3"]
    [letter] = converted.dead_letters
    assert letter.reason == EVENT_TOO_LARGE and "event 2 of 3" in str(letter.detail)
    topics = [m.topic for m in converted.messages]
    assert topics.count(dead_letter_topic("rwi")) == 1 and len(topics) == 3
    assert all(m.size <= 8000 for m in converted.messages)
    # The letter holds that event alone (cut to fit), not its neighbours.
    kept = decode(converted.messages[topics.index(dead_letter_topic("rwi"))].value)["raw"]
    assert isinstance(kept, bytes) and kept.startswith(b'{"event_type":"call_ringing"')
    assert b"big-2" in kept and b"a-1" not in kept
    # Each oversize event of a body has its own id, stable across redeliveries.
    twice = json.dumps([envelope("big-1", blob=20_000), envelope("big-1", blob=20_000)]).encode()
    ids = [d.dead_letter_id for d in BodyConverter("pbx").convert(
        twice, source="webhook", received_at=NOW, max_message_bytes=8000).dead_letters]
    assert len(set(ids)) == 2
    assert ids == [d.dead_letter_id for d in BodyConverter("pbx").convert(
        twice, source="webhook", received_at=NOW, max_message_bytes=8000).dead_letters]


@pytest.mark.parametrize("raw", [b"{" * 50_000, b"\xff" * 50_000, b"[" + b"1," * 30_000 + b"]"])
def test_garbage_too_large_for_a_message_is_dead_lettered_cut_short(raw: bytes) -> None:
    converted = BodyConverter("pbx").convert(raw, source="ws", received_at=NOW,
                                             max_message_bytes=10_000)
    [message] = converted.messages
    assert message.size <= 10_000
    record = decode(message.value)
    assert raw.startswith(record["raw"]) and f"of {len(raw)} bytes" in str(record["detail"])
