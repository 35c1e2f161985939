"""One batch of Kafka messages to Arrow tables, one per (lake table, event date).

Values are grouped by their writer schema (fingerprint or registry id), each group decoded
column-wise (:mod:`pipelines.avro_arrow`), flattened and conformed to the table's current
schema: a field the writer did not have is filled with its Avro default, a field only the
writer has is kept as an extra column, so nothing decoded is dropped. A value that cannot
be decoded at all becomes a row of the dead-letter table, with its bytes and the reason.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fastavro import schemaless_reader

from pipelines import avro
from pipelines.arrow_schema import (
    DEAD_LETTER_TABLE,
    PROVENANCE,
    TIMESTAMP,
    TableSpec,
    flatten,
    lake_tables,
    record_type,
    table_spec,
)
from pipelines.avro_arrow import ColumnarDecoder, UnsupportedSchema, pack
from pipelines.errors import SchemaError
from pipelines.events import DeadLetter
from pipelines.kafka_read import MessageBatch

logger = logging.getLogger(__name__)

ConfluentLookup = Callable[[int], avro.AvroSchema]
DEAD_LETTER_SOURCE = "compaction"


@dataclass(frozen=True, slots=True)
class TablePiece:
    """Rows of one lake table and day from one batch, in offset order."""

    table: str
    date: str
    data: pa.Table
    fingerprints: Mapping[str, int]


class _Writer:
    """What is known about one writer schema: its table and a decoder (None: use fastavro)."""

    def __init__(self, schema: avro.AvroSchema, table: str | None) -> None:
        self.schema = schema
        self.table = table
        self.problem = None if table else f"{schema.name} is not a lake table's schema"
        try:
            self.arrow = record_type(schema)
        except SchemaError as exc:
            self.table, self.problem = None, f"{schema.name} has no Arrow form: {exc}"
            self.arrow = pa.struct([])
        try:
            self.decoder: ColumnarDecoder | None = ColumnarDecoder(schema.parsed)
        except UnsupportedSchema as exc:
            logger.info("%s decodes record by record: %s", schema.name, exc)
            self.decoder = None


class BatchConverter:
    """Converts batches for the lake tables derived from ``schema_dir``."""

    def __init__(
        self,
        store: avro.SchemaStore,
        schema_dir: Path = avro.SCHEMA_DIR,
        confluent_lookup: ConfluentLookup | None = None,
    ) -> None:
        self.store = store
        self.confluent_lookup = confluent_lookup
        self.specs = {t: table_spec(t, schema_dir) for t in lake_tables()}
        self._table_of = {spec.schema.name: t for t, spec in self.specs.items()}
        self._writers: dict[bytes, _Writer] = {}

    def _writer(self, schema: avro.AvroSchema) -> _Writer:
        writer = self._writers.get(schema.fingerprint)
        if writer is None:
            writer = _Writer(schema, self._table_of.get(schema.name))
            self._writers[schema.fingerprint] = writer
        return writer

    def convert(self, batch: MessageBatch) -> list[TablePiece]:
        """Tables of the batch by (table, day), in a deterministic order."""
        n = len(batch)
        if n == 0:
            return []
        buf, starts, ends = pack(batch.values)
        offsets = np.asarray(batch.offsets, dtype=np.int64)
        kafka_us = np.asarray(batch.timestamps, dtype=np.int64) * 1000
        groups, dead = self._group(buf, starts, ends, batch)
        pieces: dict[str, list[pa.Table]] = {}
        for writer, rows, header in groups:
            decoded, failed = self._decode(writer, buf, starts[rows] + header, ends[rows])
            for index, reason in failed:
                dead.append((int(rows[index]), "undecodable", reason))
            if decoded is None:
                continue
            records, kept = decoded
            assert writer.table is not None
            spec = self.specs[writer.table]
            kept_rows = rows[kept]
            columns = conform(flatten(records), spec, len(kept_rows))
            table = _with_provenance(columns, batch, offsets[kept_rows], kafka_us[kept_rows],
                                     writer.schema.fingerprint_hex)
            pieces.setdefault(writer.table, []).append(table)
        if dead:
            pieces.setdefault(DEAD_LETTER_TABLE, []).append(
                self._dead_letters(batch, dead, offsets, kafka_us))
        out: list[TablePiece] = []
        for table_name in sorted(pieces):
            out.extend(_split_by_day(self.specs[table_name], pieces[table_name]))
        return out

    def _group(
        self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, batch: MessageBatch
    ) -> tuple[list[tuple[_Writer, np.ndarray, int]], list[tuple[int, str, str]]]:
        """Rows per writer schema, and the rows whose framing or schema is unusable."""
        lengths = ends - starts
        first = buf[starts]
        second = buf[np.minimum(starts + 1, len(buf) - 1)]
        single = (lengths >= 10) & (first == 0xC3) & (second == 0x01)
        confluent = ~single & (lengths >= 5) & (first == 0x00)
        groups: list[tuple[_Writer, np.ndarray, int]] = []
        dead: list[tuple[int, str, str]] = []
        for row in np.flatnonzero(~single & ~confluent):
            dead.append((int(row), "no_framing",
                         f"value has no known Avro framing (first bytes "
                         f"{bytes(batch.values[row][:4]).hex()})"))
        rows = np.flatnonzero(single)
        if rows.size:
            fp = np.ascontiguousarray(buf[starts[rows, None] + np.arange(2, 10)]).view("<u8")
            keys, inverse = np.unique(fp.reshape(-1), return_inverse=True)
            for k, key in enumerate(keys):
                members = rows[inverse == k]
                fingerprint = int(key).to_bytes(8, "little")
                if fingerprint not in self.store:
                    dead.extend((int(r), "unknown_schema",
                                 f"unknown schema fingerprint {fingerprint.hex()}")
                                for r in members)
                    continue
                groups.append((self._writer(self.store.get(fingerprint)), members, 10))
        rows = np.flatnonzero(confluent)
        if rows.size:
            ids = np.ascontiguousarray(buf[starts[rows, None] + np.arange(1, 5)]).view(">u4")
            keys, inverse = np.unique(ids.reshape(-1), return_inverse=True)
            for k, key in enumerate(keys):
                members = rows[inverse == k]
                try:
                    if self.confluent_lookup is None:
                        raise SchemaError("Confluent-framed value but no schema registry is "
                                          "configured")
                    schema = self.confluent_lookup(int(key))
                except SchemaError as exc:
                    dead.extend((int(r), "unknown_schema", str(exc)) for r in members)
                    continue
                groups.append((self._writer(schema), members, 5))
        usable = []
        for writer, members, header in groups:
            if writer.table is None:
                dead.extend((int(r), "unexpected_schema", str(writer.problem))
                            for r in members)
            else:
                usable.append((writer, members, header))
        return usable, dead

    def _decode(
        self, writer: _Writer, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray
    ) -> tuple[tuple[pa.StructArray, np.ndarray] | None, list[tuple[int, str]]]:
        """Records of the group (and which group rows they are), plus the rows that failed."""
        if writer.decoder is not None:
            result = writer.decoder.decode(buf, starts, ends)
            if not result.bad.size:
                return (result.records, result.good), []
            retry = result.bad
            columnar: pa.StructArray | None = result.records
            good = result.good
        else:
            retry = np.arange(len(starts), dtype=np.int64)
            columnar, good = None, np.zeros(0, dtype=np.int64)
        # Record by record with fastavro: it decodes what it can and names what it cannot.
        records, decoded_rows, failed = [], [], []
        for index in retry:
            body = buf[starts[index]:ends[index]].tobytes()
            try:
                record = decode_body(body, writer.schema)
            except SchemaError as exc:
                failed.append((int(index), str(exc)))
                continue
            records.append(record)
            decoded_rows.append(int(index))
        parts = [] if columnar is None else [columnar]
        if records:
            parts.append(pa.array(records, type=writer.arrow))
        if not parts:
            return None, failed
        rows = np.concatenate([good, np.asarray(decoded_rows, dtype=np.int64)])
        merged = pa.concat_arrays(parts)
        order = np.argsort(rows, kind="stable")
        taken = merged.take(pa.array(order))
        assert isinstance(taken, pa.StructArray)
        return (taken, rows[order]), failed

    def _dead_letters(
        self,
        batch: MessageBatch,
        dead: list[tuple[int, str, str]],
        offsets: np.ndarray,
        kafka_us: np.ndarray,
    ) -> pa.Table:
        spec = self.specs[DEAD_LETTER_TABLE]
        dead.sort()
        records = []
        for row, reason, detail in dead:
            received = datetime.fromtimestamp(int(kafka_us[row]) / 1e6, UTC)
            letter = DeadLetter.build(bytes(batch.values[row]), source=DEAD_LETTER_SOURCE, pbx="",
                                      received_at=received, reason=reason,
                                      detail=f"{batch.topic}/{batch.partition}@{offsets[row]}: "
                                             f"{detail}")
            records.append(letter.to_record())
            logger.warning("%s partition %d offset %d: %s (%s); kept as a dead letter",
                           batch.topic, batch.partition, offsets[row], reason, detail)
        rows = np.asarray([r for r, _, _ in dead], dtype=np.int64)
        array = pa.array(records, type=spec.record)
        assert isinstance(array, pa.StructArray)
        columns = conform(flatten(array), spec, len(rows))
        return _with_provenance(columns, batch, offsets[rows], kafka_us[rows],
                                spec.schema.fingerprint_hex)


def decode_body(body: bytes, schema: avro.AvroSchema) -> dict[str, Any]:
    """One unframed Avro body, decoded with fastavro."""
    try:
        record = schemaless_reader(io.BytesIO(body), schema.parsed, None)
    except Exception as exc:  # fastavro raises many types on corrupt input
        raise SchemaError(f"corrupt Avro body for {schema.name}: {exc}") from exc
    if not isinstance(record, dict):
        raise SchemaError(f"{schema.name} did not decode to a record")
    return record


def _fill(value: object, atype: pa.DataType, n: int) -> pa.Array:
    if value is None:
        return pa.nulls(n, atype)
    return pa.repeat(pa.scalar(value, type=atype), n)


def conform(columns: Mapping[str, pa.Array], spec: TableSpec, n: int) -> dict[str, pa.Array]:
    """Columns in the table's order and types; missing ones filled, extra ones kept last."""
    out: dict[str, pa.Array] = {}
    provenance = {f.name for f in PROVENANCE}
    for fld in spec.file_schema:
        if fld.name in provenance:
            continue
        array = columns.get(fld.name)
        if array is None:
            out[fld.name] = _fill(spec.defaults.get(fld.name), fld.type, n)
        elif array.type != fld.type:
            out[fld.name] = array.cast(fld.type)
        else:
            out[fld.name] = array
    for name, array in columns.items():
        if name not in out:
            out[name] = array
    return out


def _with_provenance(
    columns: dict[str, pa.Array],
    batch: MessageBatch,
    offsets: np.ndarray,
    kafka_us: np.ndarray,
    fingerprint: str,
) -> pa.Table:
    n = len(offsets)
    provenance = {
        "_topic": pa.repeat(pa.scalar(batch.topic, pa.string()), n),
        "_partition": pa.repeat(pa.scalar(batch.partition, pa.int32()), n),
        "_offset": pa.array(offsets, type=pa.int64()),
        "_kafka_timestamp": pa.array(kafka_us, type=pa.int64()).view(TIMESTAMP),
        "_schema_fingerprint": pa.repeat(pa.scalar(fingerprint, pa.string()), n),
    }
    names = [*columns, *provenance]
    arrays = [*columns.values(), *provenance.values()]
    nullable = {f.name: f.nullable for f in PROVENANCE}
    fields = [pa.field(name, array.type, nullable=nullable.get(name, True))
              for name, array in zip(names, arrays, strict=True)]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


_US_PER_DAY = 86_400_000_000


def _days(table: pa.Table, spec: TableSpec) -> np.ndarray:
    """UTC day number (days since the epoch) of each row's time, Kafka time if it has none."""
    instants = table[spec.time_column]
    if instants.null_count:
        instants = pc.coalesce(instants, table["_kafka_timestamp"])
    micros = instants.combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)
    return np.floor_divide(micros, _US_PER_DAY)


def _split_by_day(spec: TableSpec, tables: list[pa.Table]) -> list[TablePiece]:
    """One piece per day; within a piece, rows in offset order (one table per writer schema)."""
    by_day: dict[int, list[tuple[pa.Table, str]]] = {}
    for table in tables:
        fingerprint = table["_schema_fingerprint"][0].as_py() if table.num_rows else ""
        days = _days(table, spec)
        unique = np.unique(days)
        if len(unique) == 1:
            by_day.setdefault(int(unique[0]), []).append((table, fingerprint))
            continue
        for day in unique:
            mask = pa.array(days == day)
            by_day.setdefault(int(day), []).append((table.filter(mask), fingerprint))
    pieces = []
    epoch = date(1970, 1, 1)
    for day in sorted(by_day):
        parts = by_day[day]
        counts: dict[str, int] = {}
        for part, fingerprint in parts:
            counts[fingerprint] = counts.get(fingerprint, 0) + part.num_rows
        if len(parts) == 1:
            data = parts[0][0]
        else:
            data = pa.concat_tables([p for p, _ in parts], promote_options="permissive")
            data = data.take(pc.sort_indices(data["_offset"]))
        pieces.append(TablePiece(spec.table, (epoch + timedelta(days=day)).isoformat(), data,
                                 counts))
    return pieces
