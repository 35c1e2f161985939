"""Arrow schemas of the lake tables, derived from the ``.avsc`` files (never inferred from data).

A lake table holds one category (or the dead letters). Its columns are the Avro record's
fields with every top-level *record* field flattened one level (``meta.event_id`` becomes
``event_id``, ``context.caller`` becomes ``caller``; a record nested deeper, such as
``context.root``, stays a struct), then the Kafka provenance columns and ``event_date``,
the UTC date of the event, which is the Hive partition key (it lives in the directory name,
not inside the Parquet files). Timestamps are ``timestamp('us', 'UTC')``, never ns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines import avro
from pipelines.catalog import CATEGORIES, CATEGORY_SCHEMA, DEAD_LETTER_SCHEMA
from pipelines.errors import SchemaError

DEAD_LETTER_TABLE = "deadletter"
PARTITION_COLUMN = "event_date"
TIMESTAMP = pa.timestamp("us", tz="UTC")
PROVENANCE: tuple[pa.Field, ...] = (
    pa.field("_topic", pa.string(), nullable=False),
    pa.field("_partition", pa.int32(), nullable=False),
    pa.field("_offset", pa.int64(), nullable=False),
    pa.field("_kafka_timestamp", TIMESTAMP),
    pa.field("_schema_fingerprint", pa.string()),
)
PROVENANCE_NAMES = tuple(f.name for f in PROVENANCE)

_PRIMITIVES: dict[str, pa.DataType] = {
    "null": pa.null(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}
_LOGICAL: dict[str, pa.DataType] = {
    # Millisecond instants are widened to microseconds so every timestamp column agrees.
    "timestamp-millis": TIMESTAMP,
    "timestamp-micros": TIMESTAMP,
    "local-timestamp-millis": pa.timestamp("us"),
    "local-timestamp-micros": pa.timestamp("us"),
    "date": pa.date32(),
    "time-millis": pa.time32("ms"),
    "time-micros": pa.time64("us"),
}


def lake_tables() -> tuple[str, ...]:
    """Every lake table: one per category, then the dead letters."""
    return (*CATEGORIES, DEAD_LETTER_TABLE)


def schema_name_of(table: str) -> str:
    """The Avro record name a lake table is derived from."""
    if table == DEAD_LETTER_TABLE:
        return DEAD_LETTER_SCHEMA
    try:
        return CATEGORY_SCHEMA[table]
    except KeyError:
        raise SchemaError(f"no lake table {table!r}") from None


def strip_internal(node: Any) -> Any:
    """A fastavro-parsed schema without its private ``__…`` keys (JSON-serialisable)."""
    if isinstance(node, dict):
        return {k: strip_internal(v) for k, v in node.items() if not str(k).startswith("__")}
    if isinstance(node, list):
        return [strip_internal(v) for v in node]
    return node


def arrow_type(avro_type: Any, named: dict[str, Any] | None = None) -> tuple[pa.DataType, bool]:
    """Arrow type of an Avro type and whether it is nullable (``["null", X]`` unions).

    ``named`` collects named types as they are met so later references resolve.
    """
    named = {} if named is None else named
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if b != "null"]
        if len(branches) != 1 or len(avro_type) > 2:
            raise SchemaError(f"unsupported union {avro_type!r}: only [null, X] maps to Arrow")
        inner, _ = arrow_type(branches[0], named)
        return inner, len(avro_type) == 2
    if isinstance(avro_type, str):
        if avro_type in _PRIMITIVES:
            return _PRIMITIVES[avro_type], False
        if avro_type in named:
            return arrow_type(named[avro_type], named)
        raise SchemaError(f"unknown Avro type {avro_type!r}")
    kind = avro_type["type"]
    logical = avro_type.get("logicalType")
    if logical in _LOGICAL:
        return _LOGICAL[logical], False
    if kind == "record":
        named[avro_type["name"]] = avro_type
        fields = []
        for field in avro_type["fields"]:
            ftype, nullable = arrow_type(field["type"], named)
            fields.append(pa.field(field["name"], ftype, nullable=nullable))
        return pa.struct(fields), False
    if kind == "array":
        item, nullable = arrow_type(avro_type["items"], named)
        return pa.list_(pa.field("item", item, nullable=nullable)), False
    if kind == "map":
        value, nullable = arrow_type(avro_type["values"], named)
        return pa.map_(pa.string(), pa.field("value", value, nullable=nullable)), False
    if kind == "enum":
        named[avro_type["name"]] = avro_type
        return pa.string(), False
    if kind == "fixed":
        named[avro_type["name"]] = avro_type
        return pa.binary(int(avro_type["size"])), False
    if kind in _PRIMITIVES:
        return _PRIMITIVES[kind], False
    raise SchemaError(f"unsupported Avro type {avro_type!r}")


def record_type(schema: avro.AvroSchema) -> pa.StructType:
    """Arrow struct type of a whole Avro record, as written (nothing flattened)."""
    rtype, _ = arrow_type(strip_internal(schema.parsed), {})
    assert isinstance(rtype, pa.StructType)
    return rtype


def flattened_fields(rtype: pa.StructType) -> list[tuple[pa.Field, str | None]]:
    """Columns of a record type with top-level records flattened, each with its parent."""
    out: list[tuple[pa.Field, str | None]] = []
    for field in rtype:
        if pa.types.is_struct(field.type):
            for child in field.type:
                out.append((child.with_nullable(child.nullable or field.nullable), field.name))
        else:
            out.append((field, None))
    names = [f.name for f, _ in out]
    reserved = set(PROVENANCE_NAMES) | {PARTITION_COLUMN}
    clashes = sorted({n for n in names if names.count(n) > 1 or n in reserved})
    if clashes:
        raise SchemaError(f"flattening gives clashing column names: {', '.join(clashes)}")
    return out


def flatten(records: pa.StructArray) -> dict[str, pa.Array]:
    """Columns of decoded records, top-level records flattened (their nulls carried down)."""
    rtype = records.type
    assert isinstance(rtype, pa.StructType)
    flattened_fields(rtype)  # raises on clashing names
    columns: dict[str, pa.Array] = {}
    for field, array in zip(rtype, records.flatten(), strict=True):
        if isinstance(array, pa.StructArray):
            for child, child_array in zip(field.type, array.flatten(), strict=True):
                columns[child.name] = child_array
        else:
            columns[field.name] = array
    return columns


def _defaults(definition: Mapping[str, Any]) -> dict[str, Any]:
    """Flattened column -> Avro default, for filling columns a writer schema lacks."""
    out: dict[str, Any] = {}
    for field in definition["fields"]:
        ftype = field["type"]
        if isinstance(ftype, dict) and ftype.get("type") == "record":
            for child in ftype["fields"]:
                out[child["name"]] = child.get("default")
        else:
            out[field["name"]] = field.get("default")
    return out


@dataclass(frozen=True, slots=True)
class TableSpec:
    """Everything the lake and the warehouse need to know about one table."""

    table: str
    schema: avro.AvroSchema
    record: pa.StructType
    columns: pa.Schema  # flattened Avro fields, then provenance, then the partition column
    time_column: str  # its UTC date is the partition key
    id_column: str  # the event's identity (duplicated deliveries share it)
    defaults: Mapping[str, Any]

    @property
    def file_schema(self) -> pa.Schema:
        """The columns stored inside each Parquet file (no partition column)."""
        return self.columns.remove(self.columns.get_field_index(PARTITION_COLUMN))

    @property
    def sort_columns(self) -> tuple[str, str]:
        return (self.time_column, self.id_column)


def lake_columns(rtype: pa.StructType) -> pa.Schema:
    """Flattened fields, provenance columns and the partition column, in that order."""
    fields = [f for f, _ in flattened_fields(rtype)]
    partition = pa.field(PARTITION_COLUMN, pa.date32(), nullable=False)
    return pa.schema([*fields, *PROVENANCE, partition])


@cache
def table_spec(table: str, schema_dir: Path = avro.SCHEMA_DIR) -> TableSpec:
    """The lake table derived from the current ``.avsc`` of its category."""
    schema = avro.load(schema_name_of(table), schema_dir)
    rtype = record_type(schema)
    columns = lake_columns(rtype)
    names = set(columns.names)
    time_column = "event_time" if "event_time" in names else "received_at"
    id_column = "event_id" if "event_id" in names else "dead_letter_id"
    for needed in (time_column, id_column):
        if needed not in names:
            raise SchemaError(f"{schema.name} has no {needed} column")
    if columns.field(time_column).type != TIMESTAMP:
        raise SchemaError(f"{schema.name}.{time_column} is not a UTC timestamp")
    return TableSpec(
        table=table,
        schema=schema,
        record=rtype,
        columns=columns,
        time_column=time_column,
        id_column=id_column,
        defaults=_defaults(strip_internal(schema.parsed)),
    )
