"""Arrow schemas of the lake tables are derived from the .avsc files, flattened, µs UTC."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines import avro
from pipelines.arrow_schema import (
    DEAD_LETTER_TABLE,
    PARTITION_COLUMN,
    PROVENANCE_NAMES,
    TIMESTAMP,
    arrow_type,
    lake_tables,
    table_spec,
)
from pipelines.catalog import CATEGORIES, CATEGORY_SCHEMA
from pipelines.errors import SchemaError


def _all_types(dtype: pa.DataType) -> list[pa.DataType]:
    found = [dtype]
    if isinstance(dtype, pa.StructType):
        for child in dtype:
            found += _all_types(child.type)
    elif isinstance(dtype, pa.MapType):
        found += _all_types(dtype.key_type) + _all_types(dtype.item_type)
    elif isinstance(dtype, pa.ListType):
        found += _all_types(dtype.value_type)
    return found


@pytest.mark.parametrize("table", lake_tables())
def test_every_table_derives_without_clashes(table: str) -> None:
    spec = table_spec(table)
    names = spec.columns.names
    assert len(names) == len(set(names))
    assert names[-1] == PARTITION_COLUMN
    assert tuple(names[-1 - len(PROVENANCE_NAMES):-1]) == PROVENANCE_NAMES
    assert PARTITION_COLUMN not in spec.file_schema.names
    assert spec.columns.field(PARTITION_COLUMN).type == pa.date32()


@pytest.mark.parametrize("table", lake_tables())
def test_no_nanoseconds_and_timestamps_are_utc_micros(table: str) -> None:
    for field in table_spec(table).columns:
        for dtype in _all_types(field.type):
            if pa.types.is_timestamp(dtype):
                assert dtype.unit == "us", field.name
                assert dtype.tz == "UTC", field.name


def test_meta_and_context_are_flattened_root_stays_a_struct() -> None:
    spec = table_spec("call")
    names = spec.columns.names
    meta = [f["name"] for f in avro.raw_definition("rwi.etl.EventMeta")["fields"]]
    context = [f["name"] for f in avro.raw_definition("rwi.etl.CallContext")["fields"]]
    assert names[:len(meta)] == meta
    assert names[len(meta):len(meta) + len(context)] == context
    assert "meta" not in names and "context" not in names
    assert spec.columns.field("event_time").type == TIMESTAMP
    assert not spec.columns.field("event_id").nullable  # required in EventMeta
    assert spec.columns.field("caller").nullable  # the context record itself is optional
    root = spec.columns.field("root").type
    assert isinstance(root, pa.StructType)
    assert [f.name for f in root] == [f["name"] for f in
                                      avro.raw_definition("rwi.etl.RootCall")["fields"]]
    assert spec.time_column == "event_time" and spec.id_column == "event_id"


def test_payload_fields_are_typed_from_the_avsc() -> None:
    spec = table_spec("call")
    assert spec.columns.field("sip_status").type == pa.int64()
    assert spec.columns.field("routing_path").type == pa.list_(
        pa.field("item", pa.string(), nullable=False))
    assert spec.columns.field("sip_headers").type == pa.map_(
        pa.string(), pa.field("value", pa.string(), nullable=False))
    assert spec.columns.field("extra").type == pa.string()
    assert spec.columns.field("warnings").type == pa.list_(
        pa.field("item", pa.string(), nullable=False))


def test_dead_letters_are_their_own_table() -> None:
    spec = table_spec(DEAD_LETTER_TABLE)
    assert spec.time_column == "received_at" and spec.id_column == "dead_letter_id"
    assert spec.columns.field("raw").type == pa.binary()
    assert set(lake_tables()) == {*CATEGORIES, DEAD_LETTER_TABLE}


def test_avro_types_map_to_arrow() -> None:
    assert arrow_type({"type": "long", "logicalType": "timestamp-millis"}) == (TIMESTAMP, False)
    assert arrow_type({"type": "int", "logicalType": "date"}) == (pa.date32(), False)
    assert arrow_type(["null", "double"]) == (pa.float64(), True)
    assert arrow_type(["boolean", "null"]) == (pa.bool_(), True)
    assert arrow_type({"type": "enum", "name": "E", "symbols": ["a"]}) == (pa.string(), False)
    assert arrow_type({"type": "fixed", "name": "F", "size": 4}) == (pa.binary(4), False)
    with pytest.raises(SchemaError):
        arrow_type(["null", "string", "long"])


def test_a_new_optional_field_becomes_a_new_nullable_column(tmp_path: Path) -> None:
    for path in avro.SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(path, tmp_path / path.name)
    name = CATEGORY_SCHEMA["call"]
    definition = avro.raw_definition(name)
    definition["fields"].insert(-1, {"name": "queue_name", "type": ["null", "string"],
                                     "default": None})
    (tmp_path / f"{name}.avsc").write_text(json.dumps(definition), encoding="utf-8")
    old, new = table_spec("call"), table_spec("call", tmp_path)
    assert new.columns.field("queue_name") == pa.field("queue_name", pa.string())
    assert [n for n in new.columns.names if n not in old.columns.names] == ["queue_name"]
    assert new.schema.fingerprint != old.schema.fingerprint


def test_a_field_clashing_after_flattening_is_refused(tmp_path: Path) -> None:
    for path in avro.SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(path, tmp_path / path.name)
    name = CATEGORY_SCHEMA["media"]
    definition = avro.raw_definition(name)
    definition["fields"].insert(-1, {"name": "event_type", "type": ["null", "string"],
                                     "default": None})
    (tmp_path / f"{name}.avsc").write_text(json.dumps(definition), encoding="utf-8")
    with pytest.raises(SchemaError, match="event_type"):
        table_spec("media", tmp_path)
