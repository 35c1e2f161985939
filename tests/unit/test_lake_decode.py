"""The columnar decoder agrees with fastavro, record for record, and isolates corrupt bodies."""

from __future__ import annotations

import io
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from pipelines import avro
from pipelines.arrow_schema import lake_tables, table_spec
from pipelines.avro_arrow import ColumnarDecoder, UnsupportedSchema, pack, supported

SYNTHETIC = {
    "type": "record",
    "name": "t.All",
    "fields": [
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "s", "type": "string"},
        {"name": "by", "type": "bytes"},
        {"name": "ns", "type": ["string", "null"]},
        {"name": "nl", "type": ["null", "long"]},
        {"name": "e", "type": {"type": "enum", "name": "t.E", "symbols": ["A", "B", "C"]}},
        {"name": "fx", "type": {"type": "fixed", "name": "t.F", "size": 3}},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tu", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "dt", "type": {"type": "int", "logicalType": "date"}},
        {"name": "arr", "type": {"type": "array", "items": "long"}},
        {"name": "narr", "type": ["null", {"type": "array", "items": ["null", "string"]}]},
        {"name": "m", "type": {"type": "map", "values": "double"}},
        {"name": "rec", "type": ["null", {"type": "record", "name": "t.R", "fields": [
            {"name": "x", "type": "string"}, {"name": "y", "type": ["null", "t.F"]}]}]},
        {"name": "rec2", "type": "t.R"},
    ],
}


def _value(schema: Any, rnd: random.Random, named: dict[str, Any]) -> Any:
    if isinstance(schema, list):
        return _value(rnd.choice(schema), rnd, named)
    if isinstance(schema, str):
        if schema in named:
            return _value(named[schema], rnd, named)
        schema = {"type": schema}
    kind, logical = schema["type"], schema.get("logicalType")
    if isinstance(kind, dict | list):
        return _value(kind, rnd, named)
    if logical in ("timestamp-millis", "timestamp-micros"):
        base = datetime(2026, 8, 22, tzinfo=UTC) + timedelta(seconds=rnd.randint(-10**6, 10**6))
        return base + timedelta(milliseconds=rnd.randint(0, 999))
    if logical == "date":
        return date(2026, 1, 1) + timedelta(days=rnd.randint(-400, 400))
    if kind == "null":
        return None
    if kind == "boolean":
        return rnd.random() < 0.5
    if kind in ("int", "long"):
        bits = 31 if kind == "int" else 63
        return rnd.choice([0, -1, 1, 63, -64, 64, 2**bits - 1, -(2**bits),
                           rnd.randint(-(2**bits), 2**bits - 1)])
    if kind in ("float", "double"):
        return rnd.choice([0.0, -1.5, 3.25, 1e10])
    if kind == "string":
        return "".join(rnd.choice("abcé✓ \"\\{}") for _ in range(rnd.choice([0, 1, 5, 13, 40])))
    if kind == "bytes":
        return bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 3, 20])))
    if kind == "enum":
        named[schema["name"]] = schema
        return rnd.choice(schema["symbols"])
    if kind == "fixed":
        named[schema["name"]] = schema
        return bytes(rnd.randrange(256) for _ in range(schema["size"]))
    if kind == "array":
        return [_value(schema["items"], rnd, named) for _ in range(rnd.choice([0, 1, 2, 7]))]
    if kind == "map":
        return {f"k{j}": _value(schema["values"], rnd, named)
                for j in range(rnd.choice([0, 1, 3]))}
    if kind == "record":
        named[schema["name"]] = schema
        return {f["name"]: _value(f["type"], rnd, named) for f in schema["fields"]}
    raise AssertionError(kind)


def _encode(parsed: Any, records: list[dict[str, Any]]) -> list[bytes]:
    out = []
    for record in records:
        buf = io.BytesIO()
        schemaless_writer(buf, parsed, record)
        out.append(buf.getvalue())
    return out


def _fastavro(parsed: Any, body: bytes) -> Any:
    return schemaless_reader(io.BytesIO(body), parsed, None)


def _normal(value: Any, atype: pa.DataType) -> Any:
    """Arrow's Python values in fastavro's shapes (maps as dicts)."""
    if value is None:
        return None
    if isinstance(atype, pa.MapType):
        return {k: _normal(v, atype.item_type) for k, v in value}
    if isinstance(atype, pa.ListType):
        return [_normal(v, atype.value_type) for v in value]
    if isinstance(atype, pa.StructType):
        return {f.name: _normal(value[f.name], f.type) for f in atype}
    return value


def _rows(result: Any) -> list[Any]:
    return [_normal(r, result.records.type) for r in result.records.to_pylist()]


def _decode(parsed: Any, bodies: list[bytes]) -> Any:
    buf, starts, ends = pack(bodies)
    return ColumnarDecoder(parsed).decode(buf, starts, ends)


def _named(schema: Any, found: dict[str, Any]) -> dict[str, Any]:
    """Every named type declared anywhere in ``schema``."""
    if isinstance(schema, list):
        for branch in schema:
            _named(branch, found)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            found[schema["name"]] = schema
        for f in schema.get("fields", []):
            _named(f["type"], found)
        for key in ("items", "values"):
            if key in schema:
                _named(schema[key], found)
        if isinstance(schema.get("type"), dict | list):
            _named(schema["type"], found)
    return found


@pytest.mark.parametrize("seed", range(4))
def test_synthetic_schema_matches_fastavro(seed: int) -> None:
    rnd = random.Random(seed)
    parsed = parse_schema(SYNTHETIC)
    records = [_value(SYNTHETIC, rnd, _named(SYNTHETIC, {})) for _ in range(300)]
    bodies = _encode(parsed, records)
    result = _decode(parsed, bodies)
    assert result.bad.size == 0
    expected = [_fastavro(parsed, b) for b in bodies]
    assert _rows(result) == expected


@pytest.mark.parametrize("table", lake_tables())
def test_project_schemas_match_fastavro(table: str) -> None:
    schema = table_spec(table).schema
    assert supported(schema.parsed)
    rnd = random.Random(table)
    definition = avro.raw_definition(schema.name)
    parsed = schema.parsed
    named: dict[str, Any] = {}
    for name in ("rwi.etl.EventMeta", "rwi.etl.CallContext", "rwi.etl.RootCall"):
        named[name] = avro.raw_definition(name)
    records = [_value(definition, rnd, dict(named)) for _ in range(200)]
    bodies = _encode(parsed, records)
    result = _decode(parsed, bodies)
    assert result.bad.size == 0
    assert _rows(result) == [_fastavro(parsed, b) for b in bodies]


def test_corrupt_bodies_are_isolated_and_never_crash() -> None:
    rnd = random.Random(7)
    parsed = parse_schema(SYNTHETIC)
    records = [_value(SYNTHETIC, rnd, _named(SYNTHETIC, {})) for _ in range(200)]
    bodies = _encode(parsed, records)
    broken = {3: bodies[3][:-1], 10: bodies[10] + b"\x00\x01", 20: b"", 30: b"\xff" * 40,
              40: bodies[40][: len(bodies[40]) // 2], 199: bodies[199][:5]}
    for index, value in broken.items():
        bodies[index] = value
    result = _decode(parsed, bodies)
    assert set(result.bad.tolist()) == set(broken)
    assert result.good.tolist() == [i for i in range(200) if i not in broken]
    assert _rows(result) == [_fastavro(parsed, bodies[i]) for i in result.good]


def test_random_garbage_never_crashes() -> None:
    rnd = np.random.default_rng(3)
    parsed = parse_schema(SYNTHETIC)
    bodies = [rnd.integers(0, 256, size=int(rnd.integers(0, 80)), dtype=np.uint8).tobytes()
              for _ in range(500)]
    result = _decode(parsed, bodies)
    assert len(result.good) + len(result.bad) == 500
    # Anything accepted decodes the same with fastavro.
    assert _rows(result) == [_fastavro(parsed, bodies[i]) for i in result.good]


def test_invalid_utf8_sends_the_batch_to_the_careful_path() -> None:
    parsed = parse_schema({"type": "record", "name": "t.S",
                           "fields": [{"name": "s", "type": "string"}]})
    bodies = _encode(parsed, [{"s": "ok"}, {"s": "fine"}])
    bodies.append(b"\x04\xff\xfe")  # a 2-byte string that is not UTF-8
    result = _decode(parsed, bodies)
    assert result.bad.tolist() == [0, 1, 2]
    assert len(result.records) == 0


def test_unsupported_shapes_are_reported() -> None:
    multi = {"type": "record", "name": "t.U",
             "fields": [{"name": "u", "type": ["null", "string", "long"]}]}
    with pytest.raises(UnsupportedSchema):
        ColumnarDecoder(parse_schema(multi))
    assert not supported(parse_schema(multi))
