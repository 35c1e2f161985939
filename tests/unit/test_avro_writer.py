import io
from datetime import UTC, datetime

import pytest
from fastavro import schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import avro
from pipelines.avro_writer import compile_writer, zigzag
from pipelines.catalog import CATEGORY_SCHEMA
from pipelines.errors import SchemaError
from pipelines.ingest import BodyConverter
from pipelines.samples import all_examples

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def _fastavro(schema: avro.AvroSchema, record: dict) -> bytes:  # type: ignore[type-arg]
    buf = io.BytesIO()
    schemaless_writer(buf, schema.parsed, record)
    return buf.getvalue()


def test_byte_identical_to_fastavro_for_every_example() -> None:
    converter = BodyConverter("pbx")
    checked = 0
    for _, _, body in all_examples():
        for event in converter.convert(body, source="webhook", received_at=NOW).events:
            schema = avro.load(CATEGORY_SCHEMA[event.category])
            out = bytearray()
            schema.writer(event.to_record(), out)
            assert bytes(out) == _fastavro(schema, event.to_record()), event.event_type
            checked += 1
    assert checked == len(all_examples())


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
@settings(max_examples=500)
def test_zigzag_matches_fastavro(n: int) -> None:
    writer = compile_writer(
        {"type": "record", "name": "L", "fields": [{"name": "n", "type": "long"}]}
    )
    out = bytearray()
    writer({"n": n}, out)
    buf = io.BytesIO()
    schemaless_writer(
        buf, {"type": "record", "name": "L", "fields": [{"name": "n", "type": "long"}]}, {"n": n}
    )
    assert bytes(out) == buf.getvalue() == zigzag(n)


def test_wrong_types_are_schema_errors() -> None:
    schema = avro.load("rwi.etl.CallEvent")
    record = (
        BodyConverter("p")
        .convert(
            b'{"event_type": "call_hangup", "call_id": "c", "sip_status": 486}',
            source="ws",
            received_at=NOW,
        )
        .events[0]
        .to_record()
    )
    record["sip_status"] = "busy"
    with pytest.raises(SchemaError):
        avro.encode(schema, record)
    del record["sip_status"]
    with pytest.raises(SchemaError):
        avro.encode(schema, record)


def test_unsupported_unions_are_refused() -> None:
    with pytest.raises(ValueError, match="unions"):
        compile_writer(
            {"type": "record", "name": "U", "fields": [{"name": "u", "type": ["string", "long"]}]}
        )


def test_event_writer_equals_the_record_writer() -> None:
    """encode_event reads CanonicalEvent attributes directly; the bytes must not change."""
    from pipelines.encode import compile_event_writer

    converter = BodyConverter("pbx")
    writers: dict[str, object] = {}
    checked = 0
    for _, _, body in all_examples():
        for source in ("webhook", "ws"):
            for event in converter.convert(body, source=source, received_at=NOW).events:
                schema = avro.load(CATEGORY_SCHEMA[event.category])
                writer = writers.setdefault(event.category, compile_event_writer(schema))
                direct, via_record = bytearray(), bytearray()
                writer(event, direct)  # type: ignore[operator]
                schema.writer(event.to_record(), via_record)
                assert direct == via_record, event.event_type
                checked += 1
    assert checked == 2 * len(all_examples())


def test_repeated_timestamps_reuse_their_encoding_safely() -> None:
    schema = {"type": "record", "name": "T", "fields": [
        {"name": "a", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "b", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    ]}
    writer = compile_writer(schema)
    later = datetime(2027, 1, 1, tzinfo=UTC)
    for a, b in ((NOW, NOW), (NOW, later), (later, later), (later, NOW), (5, 5), (NOW, 7)):
        out = bytearray()
        writer({"a": a, "b": b}, out)
        assert bytes(out) == _fastavro(avro.schema_from_dict(schema), {"a": a, "b": b})
    with pytest.raises((TypeError, AttributeError)):
        writer({"a": None, "b": NOW}, bytearray())  # never served from the cache
