"""Metadata an operator reads in the UI: Markdown tables, bar charts, column schemas."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import duckdb
from dagster import MetadataValue, TableColumn, TableSchema

from pipelines.warehouse import quote

_BAR_WIDTH = 30


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "…"


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table (values shortened, pipes escaped)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def bar_chart(pairs: Sequence[tuple[Any, int | float]], unit: str = "") -> str:
    """A horizontal bar chart in Markdown (one row per label, bars of block characters)."""
    if not pairs:
        return "_no data_"
    top = max((float(v) for _, v in pairs), default=0.0) or 1.0
    rows = []
    for label, value in pairs:
        bar = "█" * max(round(_BAR_WIDTH * float(value) / top), 1 if value else 0)
        rows.append((label, f"`{bar}` {_cell(value)}{unit}"))
    return markdown_table(["", ""], rows)


def query_markdown(con: duckdb.DuckDBPyConnection, sql: str,
                   params: Sequence[Any] | None = None) -> MetadataValue:
    """The result of a query as a Markdown table."""
    cur = con.execute(sql, params) if params is not None else con.execute(sql)
    columns = [d[0] for d in cur.description or ()]
    return MetadataValue.md(markdown_table(columns, cur.fetchall()))


def column_schema(con: duckdb.DuckDBPyConnection, schema: str, table: str,
                  descriptions: Mapping[str, str] | None = None) -> TableSchema:
    """The table's columns with their DuckDB types and, when known, their meaning."""
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? AND table_catalog = current_database() "
        "ORDER BY ordinal_position", [schema, table]).fetchall()
    about = descriptions or {}
    return TableSchema(columns=[
        TableColumn(name=str(name), type=str(dtype), description=about.get(str(name)))
        for name, dtype in rows
    ])


def count(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {quote(schema)}.{quote(table)}").fetchone()
    return int(row[0]) if row else 0


def has_table(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? "
        "AND table_name = ? AND table_catalog = current_database()", [schema, table]).fetchone()
    return bool(row and row[0])
