import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines import avro
from pipelines.catalog import CATEGORY_SCHEMA, DEAD_LETTER_SCHEMA
from pipelines.errors import SchemaError
from pipelines.ingest import BodyConverter
from pipelines.samples import all_examples

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
RECEIVED = datetime(2026, 11, 2, 8, 0, 0, 123456, tzinfo=UTC)


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification writes it."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


@pytest.mark.parametrize("name", [*CATEGORY_SCHEMA.values(), DEAD_LETTER_SCHEMA])
def test_fingerprint_is_crc64_avro_of_the_canonical_form(name: str) -> None:
    schema = avro.load(name)
    expected = crc64_avro(schema.canonical.encode()).to_bytes(8, "little")
    assert schema.fingerprint == expected


def golden_cases() -> dict[str, bytes]:
    """One example body per category schema (the first catalog type of each)."""
    cases: dict[str, bytes] = {}
    converter = BodyConverter("golden-pbx")
    for _event_type, _dialect, body in sorted(all_examples(), key=lambda e: e[1] != "current"):
        event = converter.convert(body, source="webhook", received_at=RECEIVED).events[0]
        cases.setdefault(CATEGORY_SCHEMA[event.category], body)
    cases["rwi.etl.UnknownEvent"] = json.dumps(
        {"event_type": "brand_new_type", "call_id": "c-1", "anything": [1, {"a": None}]}
    ).encode()
    return cases


@pytest.mark.parametrize("name", sorted(CATEGORY_SCHEMA.values()))
def test_golden_bytes(name: str) -> None:
    body = golden_cases()[name]
    message = BodyConverter("golden-pbx").convert(body, source="webhook", received_at=RECEIVED)
    value = message.messages[0].value
    golden = GOLDEN / f"{name}.bin"
    assert golden.exists(), f"missing golden file {golden}; run tests/make_golden.py"
    assert value == golden.read_bytes(), f"encoding of {name} changed"
    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == avro.load(name).fingerprint


def test_decode_rejects_unknown_framing_and_fingerprint() -> None:
    store = avro.SchemaStore([avro.load("rwi.etl.CallEvent")])
    with pytest.raises(SchemaError, match="no known Avro framing"):
        avro.decode(b"\x01\x02\x03", store)
    with pytest.raises(SchemaError, match="unknown schema fingerprint"):
        avro.decode(b"\xc3\x01" + b"\x00" * 8 + b"\x00", store)
    with pytest.raises(SchemaError, match="no schema registry"):
        avro.decode(b"\x00\x00\x00\x00\x01\x02", store)
    with pytest.raises(SchemaError, match="corrupt"):
        avro.decode(b"\xc3\x01" + avro.load("rwi.etl.CallEvent").fingerprint + b"\xff", store)


def test_confluent_framing_from_confluent_kafkas_own_serializer() -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    converter = BodyConverter("pbx")
    body = golden_cases()["rwi.etl.CallEvent"]
    event = converter.convert(body, source="webhook", received_at=RECEIVED).events[0]
    schema = avro.load("rwi.etl.CallEvent")
    registry = SchemaRegistryClient.new_client({"url": "mock://rwi-etl-test"})
    serializer = AvroSerializer(
        registry, avro.expanded_json(schema), conf={"auto.register.schemas": True}
    )
    value = serializer(event.to_record(), SerializationContext("rwi.call.v1", MessageField.VALUE))
    assert value is not None and value[:1] == b"\x00"

    def lookup(schema_id: int) -> avro.AvroSchema:
        return avro.schema_from_dict(json.loads(registry.get_schema(schema_id).schema_str))

    decoded = avro.decode(value, avro.SchemaStore([]), confluent_lookup=lookup)
    assert decoded.framing == "confluent"
    assert decoded.record == event.to_record()
