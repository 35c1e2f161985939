"""The raw layer as the analytics models see it: one flat relation per category.

Contract (the compaction step provides it): ``<schema>.<category>`` has every field of
``rwi.etl.EventMeta``, every field of ``rwi.etl.CallContext`` (``root`` as a STRUCT), the
category's payload fields, ``extra`` (JSON text) and provenance columns, one row per
``event_id``. The column types below are derived from the ``.avsc`` files, never typed twice.
A category with no relation yet (nothing of it was ever landed) reads as an empty relation.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import duckdb

from pipelines import avro
from pipelines.catalog import CATEGORY_SCHEMA
from pipelines.errors import ConfigError

# Categories the models read.
MODEL_CATEGORIES: tuple[str, ...] = (
    "call",
    "transfer",
    "media",
    "recording",
    "ivr",
    "queue",
    "agent",
    "conference",
)
PROVENANCE: tuple[tuple[str, str], ...] = (
    ("_topic", "VARCHAR"),
    ("_partition", "INTEGER"),
    ("_offset", "BIGINT"),
)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SCALAR = {
    "string": "VARCHAR",
    "long": "BIGINT",
    "int": "INTEGER",
    "boolean": "BOOLEAN",
    "double": "DOUBLE",
    "float": "FLOAT",
    "bytes": "BLOB",
}


def ident(name: str) -> str:
    """A validated, quoted SQL identifier (schema and table names are never data)."""
    if not _IDENT.match(name):
        raise ConfigError(f"not a valid schema or table name: {name!r}")
    return f'"{name}"'


def qualified(con: duckdb.DuckDBPyConnection, schema: str) -> str:
    """``"catalog"."schema"`` of the current database: unambiguous even when the database
    file is named like the schema (``analytics.duckdb``)."""
    row = con.execute("SELECT current_database()").fetchone()
    catalog = str(row[0]) if row else "memory"
    return '"' + catalog.replace('"', '""') + '".' + ident(schema)


def _duck_type(avro_type: Any, named: dict[str, Any]) -> str:
    if isinstance(avro_type, list):
        non_null = [t for t in avro_type if t != "null"]
        return _duck_type(non_null[0], named) if len(non_null) == 1 else "VARCHAR"
    if isinstance(avro_type, str):
        if avro_type in _SCALAR:
            return _SCALAR[avro_type]
        return _duck_type(named[avro_type], named)
    kind = avro_type.get("type")
    logical = avro_type.get("logicalType")
    if logical == "timestamp-micros" or logical == "timestamp-millis":
        return "TIMESTAMPTZ"
    if kind == "array":
        return f"{_duck_type(avro_type['items'], named)}[]"
    if kind == "map":
        return f"MAP(VARCHAR, {_duck_type(avro_type['values'], named)})"
    if kind == "record":
        inner = ", ".join(
            f"{ident(f['name'])} {_duck_type(f['type'], named)}" for f in avro_type["fields"]
        )
        return f"STRUCT({inner})"
    if isinstance(kind, str) and kind in _SCALAR:
        return _SCALAR[kind]
    return "VARCHAR"


def _record(name: str) -> dict[str, Any]:
    return avro.raw_definition(name)


@cache
def source_columns(category: str) -> tuple[tuple[str, str], ...]:
    """(column, DuckDB type) of a category's flat raw relation, in contract order."""
    named = {
        "rwi.etl.RootCall": _record("rwi.etl.RootCall"),
        "rwi.etl.EventMeta": _record("rwi.etl.EventMeta"),
        "rwi.etl.CallContext": _record("rwi.etl.CallContext"),
    }
    cols: list[tuple[str, str]] = []
    for f in named["rwi.etl.EventMeta"]["fields"]:
        cols.append((f["name"], _duck_type(f["type"], named)))
    for f in named["rwi.etl.CallContext"]["fields"]:
        cols.append((f["name"], _duck_type(f["type"], named)))
    definition = _record(CATEGORY_SCHEMA[category])
    for f in definition["fields"]:
        if f["name"] in ("meta", "context", "extra"):
            continue
        cols.append((f["name"], "VARCHAR" if f.get("rwi.json") else _duck_type(f["type"], named)))
    cols.append(("extra", "VARCHAR"))
    cols.extend(PROVENANCE)
    return tuple(cols)


def empty_relation_sql(category: str) -> str:
    """A typed, empty SELECT with the category's contract columns."""
    body = ", ".join(f"CAST(NULL AS {t}) AS {ident(c)}" for c, t in source_columns(category))
    return f"SELECT {body} WHERE false"


def existing_relations(con: duckdb.DuckDBPyConnection, schema: str) -> set[str]:
    """Tables and views present in ``schema`` of the current database."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = ? AND table_catalog = current_database()",
        [schema],
    ).fetchall()
    return {r[0] for r in rows}


def relation_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? AND table_catalog = current_database()",
        [schema, table],
    ).fetchall()
    return {r[0] for r in rows}


def select_contract(con: duckdb.DuckDBPyConnection, schema: str, category: str) -> str:
    """SELECT of the contract columns from ``schema.category``; a column the relation lacks
    (an older raw layer, a field added to the schema later) reads as NULL."""
    if category not in existing_relations(con, schema):
        return empty_relation_sql(category)
    present = relation_columns(con, schema, category)
    parts = []
    for col, dtype in source_columns(category):
        if col in present:
            parts.append(ident(col))
        else:
            parts.append(f"CAST(NULL AS {dtype}) AS {ident(col)}")
    return f"SELECT {', '.join(parts)} FROM {qualified(con, schema)}.{ident(category)}"
