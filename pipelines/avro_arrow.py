"""Columnar Avro decoding: many framed values of one writer schema straight into Arrow.

Decoding record by record with fastavro costs tens of microseconds per event; compaction
needs a few. This decoder walks all records of a batch in lock-step with numpy: for each
field it reads that field of every record at once (``pos`` holds one cursor per record),
so the Python work is per field, not per record. It handles the Avro shapes the project's
schemas use — primitives, ``[null, X]`` unions, records, arrays, maps, enums, fixed and the
date/time logical types — and reports any other shape as unsupported so the caller falls
back to fastavro.

Records are independent lanes: a corrupt body can only spoil its own lane. A lane is
*bad* when a length, count or union branch is impossible, or when its cursor does not end
exactly at the end of its body; the caller re-decodes bad lanes with fastavro, which either
decodes them or says why not (they become dead letters).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.arrow_schema import arrow_type, strip_internal
from pipelines.errors import SchemaError

_MAX_VARINT_BYTES = 10
_MAX_ITEMS = 1 << 24  # items of one array or map in one record; more is treated as corrupt


class UnsupportedSchema(Exception):
    """The writer schema uses an Avro shape this decoder does not handle."""


class _Lanes:
    """Cursors of a subset of records: read position, end of body, top-level row.

    ``end`` and ``rows`` of a subset are only gathered when asked for: most fields never
    need them (a union branch or a number does not check the end; only corrupt lanes need
    their row).
    """

    __slots__ = ("_end", "_index", "_parent", "_rows", "abuf", "bad", "buf", "pos")

    def __init__(self, buf: np.ndarray, abuf: pa.Buffer, bad: np.ndarray, pos: np.ndarray,
                 end: np.ndarray | None = None, rows: np.ndarray | None = None,
                 parent: _Lanes | None = None, index: np.ndarray | None = None) -> None:
        self.buf = buf
        self.abuf = abuf  # the same bytes as an Arrow buffer (zero-copy)
        self.bad = bad  # per top-level row, shared by every subset
        self.pos = pos
        self._end = end
        self._rows = rows
        self._parent = parent
        self._index = index

    def __len__(self) -> int:
        return int(self.pos.shape[0])

    @property
    def end(self) -> np.ndarray:
        if self._end is None:
            assert self._parent is not None and self._index is not None
            self._end = self._parent.end[self._index]
        return self._end

    @property
    def rows(self) -> np.ndarray:
        if self._rows is None:
            assert self._parent is not None and self._index is not None
            self._rows = self._parent.rows[self._index]
        return self._rows

    def subset(self, index: np.ndarray) -> _Lanes:
        return _Lanes(self.buf, self.abuf, self.bad, self.pos[index], parent=self, index=index)

    def mark_bad(self, mask: np.ndarray) -> None:
        if mask.any():
            self.bad[self.rows[mask]] = True


Decoder = Callable[[_Lanes], pa.Array]


_ZIGZAG_BYTE = np.array([(b >> 1) ^ -(b & 1) for b in range(256)], dtype=np.int64)


def _read_long(lanes: _Lanes) -> np.ndarray:
    """Zig-zag varint at each cursor; cursors advance past it."""
    buf, pos = lanes.buf, lanes.pos
    # mode="clip": a corrupt lane may run past the buffer; it is caught afterwards.
    first = buf.take(pos, mode="clip")
    pos += 1
    more = np.flatnonzero(first >= 0x80)
    if not more.size:  # the common case: every value fits in one byte
        return _ZIGZAG_BYTE.take(first)
    limit = len(buf) - 1
    value = (first & 0x7F).astype(np.uint64)
    shift = 7
    while more.size:
        if shift >= 7 * _MAX_VARINT_BYTES:
            wrong = np.zeros(len(pos), dtype=bool)
            wrong[more] = True
            lanes.mark_bad(wrong)
            break
        byte = buf[np.minimum(pos[more], limit)].astype(np.uint64)
        value[more] |= (byte & np.uint64(0x7F)) << np.uint64(shift)
        pos[more] += 1
        more = more[byte >= 0x80]
        shift += 7
    half = (value >> np.uint64(1)).astype(np.int64)
    return half ^ -(value & np.uint64(1)).astype(np.int64)


def _expand(present: np.ndarray, child: pa.Array, count: int) -> pa.Array:
    """``child`` holds values for the ``present`` lanes; spread it out to ``count`` with nulls."""
    if present.all():
        return child
    if not present.any():
        return pa.nulls(count, child.type)
    index = np.cumsum(present, dtype=np.int64) - 1
    return child.take(pa.array(index, mask=~present))


def _gather(lanes: _Lanes, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bytes of ``sizes[i]`` at each cursor, concatenated, with their int32 offsets."""
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    total = int(offsets[-1])
    if total:
        # Byte index of every output byte: consecutive within a value, jumping between
        # values, built as one cumulative sum of steps.
        filled = np.flatnonzero(sizes)
        starts = lanes.pos[filled]
        step = np.ones(total, dtype=np.int64)
        step[offsets[filled]] = starts - np.concatenate(([0], (starts + sizes[filled])[:-1])) + 1
        step[0] -= 1
        data = lanes.buf[np.cumsum(step, out=step)]
    else:
        data = np.zeros(0, dtype=np.uint8)
    lanes.pos += sizes
    return offsets.astype(np.int32), data


def _sizes(lanes: _Lanes) -> np.ndarray:
    sizes = _read_long(lanes)
    # Checked against the buffer, not each record's end (cheaper): a value running into the
    # next record leaves its lane past its end, which the final check catches.
    wrong = (sizes < 0) | (sizes > lanes.buf.shape[0] - lanes.pos)
    if wrong.any():
        lanes.mark_bad(wrong)
        sizes = np.where(wrong, 0, sizes)
    return sizes


class _BinaryDecoder:
    """Strings and bytes, copied out of the batch buffer by Arrow's ``take``.

    The values of one field lie in increasing, non-overlapping order in the buffer (records
    are laid out in row order), so offsets alternating value start / value end describe a
    zero-copy binary array over the whole buffer whose even elements are the values; taking
    those (and nulls, for a union) copies each value once, in C++.
    """

    def __init__(self, atype: pa.DataType) -> None:
        self.atype = atype

    def __call__(self, lanes: _Lanes) -> pa.Array:
        return self._take(lanes, _sizes(lanes), None)

    def spread(self, lanes: _Lanes, present: np.ndarray) -> pa.Array:
        """Values for the ``present`` lanes of a union, nulls elsewhere."""
        return self._take(lanes, _sizes(lanes), present)

    def _take(self, lanes: _Lanes, sizes: np.ndarray, present: np.ndarray | None) -> pa.Array:
        n = len(sizes)
        starts = lanes.pos
        ends = starts + sizes
        large = lanes.buf.shape[0] >= 2**31 - 1
        bounds = np.empty(2 * n + 1, dtype=np.int64 if large else np.int32)
        bounds[0:2 * n:2] = starts
        bounds[1:2 * n:2] = ends
        bounds[2 * n] = ends[-1] if n else 0
        if n and (bool((np.diff(bounds) < 0).any()) or int(bounds[0]) < 0
                  or int(bounds[-2]) > lanes.buf.shape[0]):
            # Only a corrupt lane can run backwards or off the buffer; gather byte by byte.
            offsets, data = _gather(lanes, sizes)
            array = pa.Array.from_buffers(
                self.atype, n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
            return array if present is None else _expand(present, array, len(present))
        lanes.pos = ends
        spans = pa.Array.from_buffers(pa.large_binary() if large else pa.binary(), 2 * n,
                                      [None, pa.py_buffer(bounds), lanes.abuf])
        if present is None:
            index = pa.array(np.arange(0, 2 * n, 2, dtype=np.int64))
        else:
            index = pa.array((np.cumsum(present, dtype=np.int64) - 1) * 2, mask=~present)
        values = spans.take(index)
        if large:
            values = values.cast(pa.binary())
        # UTF-8 is validated once for the whole batch by the caller (Array.validate).
        return values.view(self.atype)


def _binary_decoder(atype: pa.DataType) -> Decoder:
    return _BinaryDecoder(atype)


def _fixed_width_decoder(width: int, dtype: str, atype: pa.DataType) -> Decoder:
    def decode(lanes: _Lanes) -> pa.Array:
        index = np.minimum(lanes.pos[:, None] + np.arange(width, dtype=np.int64),
                           len(lanes.buf) - 1)
        raw = np.ascontiguousarray(lanes.buf[index]).view(dtype).reshape(-1)
        lanes.pos += width
        return pa.array(raw, type=atype)

    return decode


def _long_decoder(atype: pa.DataType, scale: int = 1) -> Decoder:
    def decode(lanes: _Lanes) -> pa.Array:
        values = _read_long(lanes)
        if scale != 1:
            values = values * scale
        if pa.types.is_int32(atype) or pa.types.is_date32(atype) or pa.types.is_time32(atype):
            values = values.astype(np.int32)
        storage = pa.array(values)
        return storage if storage.type == atype else storage.view(atype)

    return decode


def _boolean_decoder(lanes: _Lanes) -> pa.Array:
    values = lanes.buf.take(lanes.pos, mode="clip") != 0
    lanes.pos += 1
    return pa.array(values, type=pa.bool_())


def _null_decoder(lanes: _Lanes) -> pa.Array:
    return pa.nulls(len(lanes))


def _enum_decoder(symbols: Sequence[str]) -> Decoder:
    table = pa.array(list(symbols), type=pa.string())

    def decode(lanes: _Lanes) -> pa.Array:
        index = _read_long(lanes)
        wrong = (index < 0) | (index >= len(symbols))
        lanes.mark_bad(wrong)
        return table.take(pa.array(np.where(wrong, 0, index)))

    return decode


def _fixed_decoder(size: int) -> Decoder:
    def decode(lanes: _Lanes) -> pa.Array:
        index = np.minimum(lanes.pos[:, None] + np.arange(size, dtype=np.int64),
                           len(lanes.buf) - 1)
        data = np.ascontiguousarray(lanes.buf[index])
        lanes.pos += size
        return pa.Array.from_buffers(pa.binary(size), len(lanes), [None, pa.py_buffer(data)])

    return decode


def _union_decoder(null_branch: int, inner: Decoder) -> Decoder:
    value_byte = 2 if null_branch == 0 else 0  # zig-zag of the non-null branch index

    def decode(lanes: _Lanes) -> pa.Array:
        # A valid branch index of a two-branch union is always the single byte 0 or 2.
        byte = lanes.buf.take(lanes.pos, mode="clip")
        lanes.pos += 1
        wrong = (byte & 0xFD) != 0
        present = byte == value_byte
        lanes.mark_bad(wrong)
        index = np.flatnonzero(present)
        if index.size == len(lanes):
            return inner(lanes)
        sub = lanes.subset(index)
        if isinstance(inner, _BinaryDecoder):
            result = inner.spread(sub, present)
        else:
            result = _expand(present, inner(sub), len(lanes))
        lanes.pos[index] = sub.pos
        return result

    return decode


def _record_decoder(fields: list[tuple[pa.Field, Decoder]]) -> Decoder:
    def decode(lanes: _Lanes) -> pa.Array:
        children = [decoder(lanes) for _, decoder in fields]
        return pa.StructArray.from_arrays(children, fields=[f for f, _ in fields])

    return decode


Blocks = Callable[[_Lanes], tuple[np.ndarray, pa.Array | None]]


def _blocks_decoder(item: Decoder, min_item_bytes: int) -> Blocks:
    """Avro's block encoding (arrays, maps): counts per lane and the items in lane order."""

    def decode(lanes: _Lanes) -> tuple[np.ndarray, pa.Array | None]:
        n = len(lanes)
        counts = np.zeros(n, dtype=np.int64)
        lane_ids: list[np.ndarray] = []
        seqs: list[np.ndarray] = []
        chunks: list[pa.Array] = []
        active = np.arange(n, dtype=np.int64)
        while active.size:
            sub = lanes.subset(active)
            count = _read_long(sub)
            negative = count < 0
            if negative.any():  # a negative count is followed by the block's byte size
                count = np.abs(count)
                skip = np.flatnonzero(negative)
                sized = sub.subset(skip)
                _read_long(sized)
                sub.pos[skip] = sized.pos
            if min_item_bytes:
                limit = (sub.end - sub.pos) // min_item_bytes
            else:
                limit = np.full(len(sub), _MAX_ITEMS, dtype=np.int64)
            wrong = (count > limit) | (count + counts[active] > _MAX_ITEMS)
            if wrong.any():
                sub.mark_bad(wrong)
                count = np.where(wrong, 0, count)
            for j in range(int(count.max(initial=0))):
                has = np.flatnonzero(count > j)
                item_lanes = sub.subset(has)
                chunks.append(item(item_lanes))
                sub.pos[has] = item_lanes.pos
                lane_ids.append(active[has])
                seqs.append(counts[active[has]] + j)
            counts[active] += count
            lanes.pos[active] = sub.pos
            active = active[count > 0]
        if not chunks:
            return counts, None
        order = np.lexsort((np.concatenate(seqs), np.concatenate(lane_ids)))
        values = pa.concat_arrays(chunks).take(pa.array(order))
        return counts, values

    return decode


def _offsets(counts: np.ndarray) -> pa.Array:
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.array(offsets)


def _array_decoder(atype: pa.ListType, item: Decoder, min_item_bytes: int) -> Decoder:
    blocks = _blocks_decoder(item, min_item_bytes)

    def decode(lanes: _Lanes) -> pa.Array:
        counts, values = blocks(lanes)
        if values is None:
            values = pa.array([], type=atype.value_type)
        return pa.ListArray.from_arrays(_offsets(counts), values, type=atype)

    return decode


def _map_decoder(atype: pa.MapType, value: Decoder, min_item_bytes: int) -> Decoder:
    key = _binary_decoder(pa.string())
    entry_fields = [pa.field("key", pa.string(), nullable=False), atype.item_field]

    def entry(lanes: _Lanes) -> pa.Array:
        keys = key(lanes)
        return pa.StructArray.from_arrays([keys, value(lanes)], fields=entry_fields)

    blocks = _blocks_decoder(entry, min_item_bytes + 1)

    def decode(lanes: _Lanes) -> pa.Array:
        counts, entries = blocks(lanes)
        if entries is None:
            keys, items = pa.array([], pa.string()), pa.array([], atype.item_type)
        else:
            assert isinstance(entries, pa.StructArray)
            keys, items = entries.field(0), entries.field(1)
        return pa.MapArray.from_arrays(_offsets(counts), keys, items, type=atype)

    return decode


_LOGICAL_SCALE = {"timestamp-millis": 1000, "local-timestamp-millis": 1000}


def _compile(node: Any, named: dict[str, Any]) -> tuple[Decoder, int]:
    """A decoder for one Avro type and the fewest bytes one value can take."""
    if isinstance(node, list):
        if len(node) != 2 or node.count("null") != 1:
            raise UnsupportedSchema(f"union {node!r}")
        null_branch = node.index("null")
        inner, _ = _compile(node[1 - null_branch], named)
        return _union_decoder(null_branch, inner), 1
    if isinstance(node, str):
        if node in named:
            return _compile(named[node], named)
        node = {"type": node}
    kind = node["type"]
    if isinstance(kind, dict | list):
        return _compile(kind, named)
    atype, _ = arrow_type(node, dict(named))
    logical = node.get("logicalType")
    if kind == "record":
        named[node["name"]] = node
        fields = []
        min_bytes = 0
        for field in node["fields"]:
            ftype, nullable = arrow_type(field["type"], dict(named))
            decoder, size = _compile(field["type"], named)
            fields.append((pa.field(field["name"], ftype, nullable=nullable), decoder))
            min_bytes += size
        return _record_decoder(fields), min_bytes
    if kind in ("int", "long"):
        if logical is not None and logical not in ("timestamp-millis", "timestamp-micros",
                                                   "local-timestamp-millis",
                                                   "local-timestamp-micros", "date",
                                                   "time-millis", "time-micros"):
            raise UnsupportedSchema(f"logical type {logical}")
        return _long_decoder(atype, _LOGICAL_SCALE.get(logical or "", 1)), 1
    if kind in ("string", "bytes"):
        if logical not in (None, "uuid"):
            raise UnsupportedSchema(f"logical type {logical}")
        return _binary_decoder(atype), 1
    if kind == "boolean":
        return _boolean_decoder, 1
    if kind == "double":
        return _fixed_width_decoder(8, "<f8", atype), 8
    if kind == "float":
        return _fixed_width_decoder(4, "<f4", atype), 4
    if kind == "null":
        return _null_decoder, 0
    if kind == "enum":
        named[node["name"]] = node
        return _enum_decoder(node["symbols"]), 1
    if kind == "fixed":
        if logical is not None:
            raise UnsupportedSchema(f"logical type {logical}")
        named[node["name"]] = node
        return _fixed_decoder(int(node["size"])), int(node["size"])
    if kind == "array":
        assert isinstance(atype, pa.ListType)
        item, size = _compile(node["items"], named)
        return _array_decoder(atype, item, size), 1
    if kind == "map":
        assert isinstance(atype, pa.MapType)
        value, size = _compile(node["values"], named)
        return _map_decoder(atype, value, size), 1
    raise UnsupportedSchema(f"Avro type {kind!r}")


@dataclass(frozen=True, slots=True)
class Columnar:
    """Decoded records of the good lanes and the indices (into the input) of the bad ones."""

    records: pa.StructArray
    good: np.ndarray  # indices of the input values that ``records`` holds, in order
    bad: np.ndarray


class ColumnarDecoder:
    """Decodes Avro bodies of one writer schema into an Arrow struct array."""

    def __init__(self, parsed_schema: Any) -> None:
        try:
            self._decode, _ = _compile(strip_internal(parsed_schema), {})
        except SchemaError as exc:  # no Arrow type at all (a union of several types)
            raise UnsupportedSchema(str(exc)) from exc

    def decode(self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Columnar:
        """Decode the bodies ``buf[starts[i]:ends[i]]``; ``buf`` must end with 16 spare bytes."""
        n = len(starts)
        bad = np.zeros(n, dtype=bool)
        lanes = _Lanes(buf, pa.py_buffer(buf), bad, starts.astype(np.int64),
                       end=ends.astype(np.int64), rows=np.arange(n, dtype=np.int64))
        records = self._decode(lanes)
        bad |= lanes.pos != lanes.end
        assert isinstance(records, pa.StructArray)
        if bad.any():
            good = np.flatnonzero(~bad)
            records = records.take(pa.array(good))
        else:
            good = np.arange(n, dtype=np.int64)
        try:
            records.validate(full=True)  # UTF-8 of every string, offsets, nested lengths
        except pa.ArrowInvalid:
            # Rare: a well-formed body with invalid UTF-8. Let the record-by-record path
            # find which one.
            return Columnar(records.slice(0, 0), good[:0], np.arange(n, dtype=np.int64))
        return Columnar(records, good, np.flatnonzero(bad))


def pack(values: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate values into one padded buffer; return it with each value's start and end."""
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    buf = np.frombuffer(b"".join(values) + bytes(16), dtype=np.uint8)
    return buf, starts, ends


def supported(parsed_schema: Any) -> bool:
    """Whether :class:`ColumnarDecoder` can decode this schema."""
    try:
        ColumnarDecoder(parsed_schema)
    except UnsupportedSchema:
        return False
    return True


def as_dict(columnar: Columnar) -> list[dict[str, Any]]:
    """Python records (for tests comparing with fastavro)."""
    return columnar.records.to_pylist()
