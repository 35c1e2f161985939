"""A compiled Avro binary writer for one schema: Python source generated per schema.

fastavro resolves unions of records by validating each branch on every write, which made
encoding the largest cost of ingest. This writer is generated once per schema, handles
exactly the shapes the project's schemas use (records, ``["null", T]`` unions, primitives,
arrays, maps, ``timestamp-micros``), and its output is checked byte for byte against
fastavro's in the tests.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pipelines.timeparse import to_micros

_SMALL = [bytes([n << 1]) for n in range(64)]  # zigzag varints of 0..63


def zigzag(n: int) -> bytes:
    """Avro ``long``: zigzag then base-128 varint."""
    if 0 <= n < 64:
        return _SMALL[n]
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _micros(value: datetime | int) -> int:
    return value if isinstance(value, int) else to_micros(value)


_PACK_DOUBLE = struct.Struct("<d").pack
# Branch index + length of a short string in a [null, string] union, as one piece.
_UNION_STR = {index: [_SMALL[index] + _SMALL[n] for n in range(64)] for index in (0, 1)}
_UNSET = object()

Access = Callable[[str, str, str], str]
"""(parent expression, field name, dotted path) -> the expression reading that field."""


def item_access(parent: str, name: str, path: str) -> str:
    """The default: records are mappings, ``parent["name"]``."""
    return f"{parent}[{name!r}]"


class _Compiler:
    def __init__(self, access: Access = item_access) -> None:
        self.lines: list[str] = []
        self.named: dict[str, Mapping[str, Any]] = {}
        self.counter = 0
        self.access = access

    def var(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema in self.named:
            return self.named[schema]
        if isinstance(schema, dict) and schema.get("type") == "record":
            self.named[self._full_name(schema)] = schema
        return schema

    @staticmethod
    def _full_name(schema: Mapping[str, Any]) -> str:
        name = str(schema["name"])
        ns = schema.get("namespace")
        return name if "." in name or not ns else f"{ns}.{name}"

    def write(self, schema: Any, expr: str, indent: int, path: str = "") -> None:
        schema = self.resolve(schema)
        if isinstance(schema, list):
            self.write_union(schema, expr, indent, path)
            return
        kind = schema if isinstance(schema, str) else schema["type"]
        logical = schema.get("logicalType") if isinstance(schema, dict) else None
        if kind == "record":
            assert isinstance(schema, dict)
            for field in schema["fields"]:
                v = self.var()
                name = field["name"]
                child = f"{path}.{name}" if path else name
                self.emit(indent, f"{v} = {self.access(expr, name, child)}")
                self.write(field["type"], v, indent, child)
        elif kind == "null":
            pass
        elif kind == "boolean":
            self.emit(indent, f"w(b'\\x01' if {expr} else b'\\x00')")
        elif kind in ("long", "int"):
            if logical in ("timestamp-micros", "local-timestamp-micros"):
                # One event's timestamps are often the same object (event_time defaults to
                # received_at, one body's events share it): remember the last encoding.
                # A (value, bytes) tuple is replaced whole, so a reader never sees a mix.
                c, b = self.var(), self.var()
                self.emit(indent, f"{c} = tcache[0]")
                self.emit(indent, f"if {c}[0] is {expr}:")
                self.emit(indent + 1, f"w({c}[1])")
                self.emit(indent, "else:")
                self.emit(indent + 1, f"{b} = zigzag(micros({expr})); tcache[0] = ({expr}, {b})")
                self.emit(indent + 1, f"w({b})")
            else:
                n = self.var()
                self.emit(indent, f"{n} = {expr}.__index__()")
                self.emit(indent, f"w(small[{n}] if 0 <= {n} < 64 else zigzag({n}))")
        elif kind == "double":
            self.emit(indent, f"w(pack_double({expr}))")
        elif kind == "string":
            b = self.var()
            n = self.var()
            self.emit(indent, f"{b} = {expr}.encode(); {n} = len({b})")
            self.emit(indent, f"w(small[{n}] if {n} < 64 else zigzag({n})); w({b})")
        elif kind == "bytes":
            self.emit(indent, f"w(zigzag(len({expr}))); w(bytes({expr}))")
        elif kind == "array":
            assert isinstance(schema, dict)
            item = self.var()
            self.emit(indent, f"if {expr}:")
            self.emit(indent + 1, f"w(zigzag(len({expr})))")
            self.emit(indent + 1, f"for {item} in {expr}:")
            self.write(schema["items"], item, indent + 2, path + "[]")
            self.emit(indent, "w(b'\\x00')")
        elif kind == "map":
            assert isinstance(schema, dict)
            key, value = self.var(), self.var()
            self.emit(indent, f"if {expr}:")
            self.emit(indent + 1, f"w(zigzag(len({expr})))")
            self.emit(indent + 1, f"for {key}, {value} in {expr}.items():")
            kb = self.var()
            self.emit(indent + 2, f"{kb} = {key}.encode(); w(zigzag(len({kb}))); w({kb})")
            self.write(schema["values"], value, indent + 2, path + "{}")
            self.emit(indent, "w(b'\\x00')")
        else:
            raise ValueError(f"unsupported Avro type {kind!r}")

    def write_union(self, branches: list[Any], expr: str, indent: int, path: str) -> None:
        others = [b for b in branches if b != "null"]
        if "null" not in branches or len(others) != 1:
            raise ValueError(f"only [null, T] unions are supported, got {branches!r}")
        null_index = branches.index("null")
        other_index = 1 - null_index
        self.emit(indent, f"if {expr} is None:")
        self.emit(indent + 1, f"w({_SMALL[null_index]!r})")
        self.emit(indent, "else:")
        if self.resolve(others[0]) == "string":
            # Branch index and length in one append: the commonest field shape.
            b, n = self.var(), self.var()
            self.emit(indent + 1, f"{b} = {expr}.encode(); {n} = len({b})")
            self.emit(indent + 1, f"w(union_str{other_index}[{n}] if {n} < 64 else "
                                  f"{_SMALL[other_index]!r} + zigzag({n})); w({b})")
            return
        self.emit(indent + 1, f"w({_SMALL[other_index]!r})")
        self.write(others[0], expr, indent + 1, path)


def compile_writer(
    schema: Mapping[str, Any],
    *,
    access: Access = item_access,
    preamble: tuple[str, ...] = (),
) -> Callable[[Any, bytearray], None]:
    """A function appending the Avro binary encoding of a record to a bytearray.

    By default the record is a mapping (nested records too). ``access`` builds the
    expression that reads a field instead, so a writer can read an object's attributes
    without first copying them into dicts; ``preamble`` lines run first (after
    ``w = out.extend``) to bind names those expressions use.
    """
    compiler = _Compiler(access)
    compiler.emit(0, "def write(record, out):")
    compiler.emit(1, "w = out.extend")
    for line in preamble:
        compiler.emit(1, line)
    compiler.write(dict(schema), "record", 1)
    namespace: dict[str, Any] = {
        "zigzag": zigzag,
        "small": _SMALL,
        "micros": _micros,
        "pack_double": _PACK_DOUBLE,
        "union_str0": _UNION_STR[0],
        "union_str1": _UNION_STR[1],
        "tcache": [(_UNSET, b"")],
    }
    source = "\n".join(compiler.lines)
    exec(compile(source, f"<avro writer {schema.get('name')}>", "exec"), namespace)
    writer: Callable[[Any, bytearray], None] = namespace["write"]
    return writer
