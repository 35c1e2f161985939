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


class _Compiler:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.named: dict[str, Mapping[str, Any]] = {}
        self.counter = 0

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

    def write(self, schema: Any, expr: str, indent: int) -> None:
        schema = self.resolve(schema)
        if isinstance(schema, list):
            self.write_union(schema, expr, indent)
            return
        kind = schema if isinstance(schema, str) else schema["type"]
        logical = schema.get("logicalType") if isinstance(schema, dict) else None
        if kind == "record":
            assert isinstance(schema, dict)
            for field in schema["fields"]:
                v = self.var()
                self.emit(indent, f"{v} = {expr}[{field['name']!r}]")
                self.write(field["type"], v, indent)
        elif kind == "null":
            pass
        elif kind == "boolean":
            self.emit(indent, f"w(b'\\x01' if {expr} else b'\\x00')")
        elif kind in ("long", "int"):
            if logical in ("timestamp-micros", "local-timestamp-micros"):
                self.emit(indent, f"w(zigzag(micros({expr})))")
            else:
                self.emit(indent, f"w(zigzag({expr}.__index__()))")
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
            self.write(schema["items"], item, indent + 2)
            self.emit(indent, "w(b'\\x00')")
        elif kind == "map":
            assert isinstance(schema, dict)
            key, value = self.var(), self.var()
            self.emit(indent, f"if {expr}:")
            self.emit(indent + 1, f"w(zigzag(len({expr})))")
            self.emit(indent + 1, f"for {key}, {value} in {expr}.items():")
            kb = self.var()
            self.emit(indent + 2, f"{kb} = {key}.encode(); w(zigzag(len({kb}))); w({kb})")
            self.write(schema["values"], value, indent + 2)
            self.emit(indent, "w(b'\\x00')")
        else:
            raise ValueError(f"unsupported Avro type {kind!r}")

    def write_union(self, branches: list[Any], expr: str, indent: int) -> None:
        others = [b for b in branches if b != "null"]
        if "null" not in branches or len(others) != 1:
            raise ValueError(f"only [null, T] unions are supported, got {branches!r}")
        null_index = branches.index("null")
        other_index = 1 - null_index
        self.emit(indent, f"if {expr} is None:")
        self.emit(indent + 1, f"w({_SMALL[null_index]!r})")
        self.emit(indent, "else:")
        self.emit(indent + 1, f"w({_SMALL[other_index]!r})")
        self.write(others[0], expr, indent + 1)


def compile_writer(schema: Mapping[str, Any]) -> Callable[[Mapping[str, Any], bytearray], None]:
    """A function appending the Avro binary encoding of a record to a bytearray."""
    compiler = _Compiler()
    compiler.emit(0, "def write(record, out):")
    compiler.emit(1, "w = out.extend")
    compiler.write(dict(schema), "record", 1)
    namespace: dict[str, Any] = {
        "zigzag": zigzag,
        "small": _SMALL,
        "micros": _micros,
        "pack_double": _PACK_DOUBLE,
    }
    source = "\n".join(compiler.lines)
    exec(compile(source, f"<avro writer {schema.get('name')}>", "exec"), namespace)
    writer: Callable[[Mapping[str, Any], bytearray], None] = namespace["write"]
    return writer
