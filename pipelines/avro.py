"""Avro schemas from ``schemas/`` and the framings values travel in.

Values are written with Avro single-object encoding (``C3 01`` + 8-byte little-endian
CRC-64-AVRO fingerprint of the schema's parsing canonical form + the binary body), so a
message names its own schema without a registry. Readers also accept the Confluent
framing (``00`` + 4-byte big-endian schema id) given a way to look an id up.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from pipelines.avro_writer import compile_writer
from pipelines.errors import SchemaError

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


@dataclass(frozen=True, slots=True)
class AvroSchema:
    """A parsed schema with its identity and a compiled binary writer."""

    name: str
    parsed: Any
    canonical: str
    fingerprint: bytes  # 8 bytes, little-endian as framed
    writer: Callable[[Mapping[str, Any], bytearray], None]

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    def field_names(self) -> list[str]:
        return [f["name"] for f in self.parsed["fields"]]


def _crc64_le(canonical: str) -> bytes:
    # fastavro renders the CRC-64-AVRO value as the hex of its little-endian bytes.
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def schema_from_dict(schema: Mapping[str, Any], named: dict[str, Any] | None = None) -> AvroSchema:
    """Parse an in-memory schema (used by compatibility tests and the registry path)."""
    parsed: Any = parse_schema(dict(schema), named_schemas=named if named is not None else {})
    return _build(str(parsed["name"]), parsed)


@cache
def load(name: str, schema_dir: Path = SCHEMA_DIR) -> AvroSchema:
    """Load ``<schema_dir>/<name>.avsc``, resolving named references by file name."""
    path = schema_dir / f"{name}.avsc"
    if not path.exists():
        raise SchemaError(f"no schema file {path}")
    return _build(name, load_schema(str(path)))


def _build(name: str, parsed: Any) -> AvroSchema:
    canonical = to_parsing_canonical_form(parsed)
    writer = compile_writer(_strip_private(parsed))
    return AvroSchema(name, parsed, canonical, _crc64_le(canonical), writer)


def plain_schema(schema: AvroSchema) -> dict[str, Any]:
    """The schema as plain Avro JSON with every named type expanded in place."""
    return dict(_strip_private(schema.parsed))


def _strip_private(node: Any) -> Any:
    """fastavro's parsed schema without its ``__`` bookkeeping keys: plain Avro JSON."""
    if isinstance(node, dict):
        return {k: _strip_private(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_strip_private(v) for v in node]
    return node


def raw_definition(name: str, schema_dir: Path = SCHEMA_DIR) -> dict[str, Any]:
    """The ``.avsc`` JSON as written (with docs and custom properties)."""
    return dict(json.loads((schema_dir / f"{name}.avsc").read_text(encoding="utf-8")))


class SchemaStore:
    """Known schemas by fingerprint, for decoding self-describing values."""

    def __init__(self, schemas: list[AvroSchema]) -> None:
        self._by_fp = {s.fingerprint: s for s in schemas}

    def get(self, fp: bytes) -> AvroSchema:
        try:
            return self._by_fp[fp]
        except KeyError:
            raise SchemaError(f"unknown schema fingerprint {fp.hex()}") from None

    def __contains__(self, fp: object) -> bool:
        return fp in self._by_fp


def encode(schema: AvroSchema, record: Mapping[str, Any]) -> bytes:
    """Single-object encoding of one record."""
    out = bytearray(SINGLE_OBJECT_MAGIC)
    out += schema.fingerprint
    try:
        schema.writer(record, out)
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeError) as exc:
        raise SchemaError(f"record does not match {schema.name}: {exc!r}") from exc
    return bytes(out)


ConfluentLookup = Callable[[int], AvroSchema]


@dataclass(frozen=True, slots=True)
class Decoded:
    schema: AvroSchema
    record: dict[str, Any]
    framing: str  # "single-object" | "confluent"


def decode(
    value: bytes,
    store: SchemaStore,
    confluent_lookup: ConfluentLookup | None = None,
    reader: AvroSchema | None = None,
) -> Decoded:
    """Decode a framed value; ``reader`` resolves an older writer schema to a newer one."""
    if value[:2] == SINGLE_OBJECT_MAGIC and len(value) >= 10:
        writer = store.get(value[2:10])
        body = value[10:]
        framing = "single-object"
    elif value[:1] == CONFLUENT_MAGIC and len(value) >= 5:
        if confluent_lookup is None:
            raise SchemaError("Confluent-framed value but no schema registry is configured")
        writer = confluent_lookup(struct.unpack(">I", value[1:5])[0])
        body = value[5:]
        framing = "confluent"
    else:
        raise SchemaError(f"value has no known Avro framing (first bytes {value[:4].hex()})")
    try:
        record = schemaless_reader(
            io.BytesIO(body), writer.parsed, reader.parsed if reader is not None else None
        )
    except Exception as exc:  # fastavro raises many types on corrupt input
        raise SchemaError(f"corrupt Avro body for {writer.name}: {exc}") from exc
    if not isinstance(record, dict):
        raise SchemaError(f"{writer.name} did not decode to a record")
    return Decoded(writer, record, framing)


def expanded_json(schema: AvroSchema) -> str:
    """The schema as standalone JSON with named types inlined (for a schema registry)."""
    return json.dumps(_strip_private(schema.parsed))
