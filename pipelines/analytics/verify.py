"""Compare the analytics tables with the simulator's ground truth, field by field.

The truth is JSON lines, one row each, ``kind`` naming the table. Every other field of a
truth row is compared with the column of the same name: instants as UTC microseconds,
integers exactly, fractions to 1e-9, lists element by element. A truth row with no table
row, a table row with no truth row, a field with no column and a differing value are each a
mismatch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from pipelines.analytics.source import existing_relations, ident, qualified
from pipelines.timeparse import parse_rfc3339, to_micros

# kind -> (table, key columns, the table's rows the truth describes)
KINDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "call": ("calls", ("call_id",), "TRUE"),
    "session": ("sessions", ("session_id",), "TRUE"),
    # The simulator's truth covers menu (tree) IVRs; step-mode runs are ours alone.
    "ivr_path": ("ivr_paths", ("call_id", "app_id"), "ivr_kind = 'tree'"),
    "ivr_node_visit": (
        "ivr_node_visits",
        ("call_id", "app_id", "visit_index"),
        "ivr_kind = 'tree'",
    ),
    "recording": ("recordings", ("call_id", "recording_id"), "TRUE"),
    "queue_call": ("queue_calls", ("call_id", "queue_id"), "TRUE"),
    "agent_state": ("agent_states", ("agent_id", "started_at", "state"), "TRUE"),
    "conference": ("conferences", ("conf_id",), "TRUE"),
    "daily": ("daily", ("day",), "TRUE"),
}
# summary field -> the count over the tables that must equal it (summed over PBXs)
SUMMARY_COUNTS: dict[str, str] = {
    "calls_started": "SELECT count(*) FROM {s}.calls",
    "calls_ended": "SELECT count(*) FROM {s}.calls WHERE complete",
    "calls_in_progress": "SELECT count(*) FROM {s}.calls WHERE NOT complete",
    "sessions": "SELECT count(*) FROM {s}.sessions",
}
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One difference between a table and the ground truth."""

    kind: str
    key: tuple[Any, ...]
    field: str
    expected: Any
    actual: Any
    problem: str = "value"  # value | missing_row | extra_row | missing_column

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": list(self.key),
            "field": self.field,
            "expected": _jsonable(self.expected),
            "actual": _jsonable(self.actual),
            "problem": self.problem,
        }

    def __str__(self) -> str:
        key = "/".join(str(k) for k in self.key)
        if self.problem == "value":
            return (
                f"{self.kind} {key}: {self.field} expected {self.expected!r}, "
                f"got {self.actual!r}"
            )
        if self.problem == "missing_column":
            return f"{self.kind}: no column {self.field!r} in the table"
        return f"{self.kind} {key}: {self.problem.replace('_', ' ')}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Mismatches plus what was compared, per kind."""

    mismatches: list[Mismatch]
    rows: dict[str, int]
    fields: dict[str, list[str]]
    skipped_kinds: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.mismatches


def read_truth(path: Path) -> Iterator[dict[str, Any]]:
    """Truth rows from a JSON-lines file."""
    with path.open("r", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def verify(
    con: duckdb.DuckDBPyConnection,
    truth: Path | Iterable[Mapping[str, Any]],
    target_schema: str = "analytics",
    *,
    kinds: Sequence[str] | None = None,
) -> list[Mismatch]:
    """Every mismatch between the analytics tables and the ground truth."""
    return verify_report(con, truth, target_schema, kinds=kinds).mismatches


def verify_report(
    con: duckdb.DuckDBPyConnection,
    truth: Path | Iterable[Mapping[str, Any]],
    target_schema: str = "analytics",
    *,
    kinds: Sequence[str] | None = None,
) -> VerifyReport:
    """Like :func:`verify`, with counts of what was compared."""
    rows_in = read_truth(truth) if isinstance(truth, Path) else truth
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows_in:
        by_kind.setdefault(str(row.get("kind")), []).append(row)
    present = existing_relations(con, target_schema)
    mismatches: list[Mismatch] = []
    counts: dict[str, int] = {}
    fields: dict[str, list[str]] = {}
    skipped: dict[str, int] = {}
    for kind, truth_rows in sorted(by_kind.items()):
        if kind == "summary" and (kinds is None or kind in kinds) and "calls" in present:
            counts[kind] = len(truth_rows)
            fields[kind] = sorted(SUMMARY_COUNTS)
            mismatches.extend(_compare_summary(con, target_schema, truth_rows))
            continue
        if kind not in KINDS or (kinds is not None and kind not in kinds):
            skipped[kind] = len(truth_rows)
            continue
        table, keys, where = KINDS[kind]
        counts[kind] = len(truth_rows)
        if table not in present:
            mismatches.append(Mismatch(kind, (), table, "table", None, "missing_column"))
            continue
        compared = sorted({f for r in truth_rows for f in r} - {"kind"})
        fields[kind] = compared
        mismatches.extend(
            _compare(con, target_schema, kind, table, keys, where, compared, truth_rows)
        )
    return VerifyReport(mismatches, counts, fields, skipped)


def _compare(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    kind: str,
    table: str,
    keys: tuple[str, ...],
    where: str,
    compared: list[str],
    truth_rows: list[Mapping[str, Any]],
) -> list[Mismatch]:
    cur = con.execute(f"SELECT * FROM {qualified(con, schema)}.{ident(table)} WHERE {where}")
    columns = [d[0] for d in cur.description or ()]
    actual_rows = cur.fetchall()
    out: list[Mismatch] = []
    missing_cols = [f for f in compared if f not in columns]
    for name in missing_cols:
        out.append(Mismatch(kind, (), name, None, None, "missing_column"))
    index = {c: i for i, c in enumerate(columns)}
    actual: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in actual_rows:
        actual[tuple(_norm_key(row[index[k]]) for k in keys)] = row
    seen: set[tuple[Any, ...]] = set()
    for t in truth_rows:
        key = tuple(_norm_key(t.get(k)) for k in keys)
        seen.add(key)
        found = actual.get(key)
        if found is None:
            out.append(Mismatch(kind, key, "*", "row", None, "missing_row"))
            continue
        for name in compared:
            if name in missing_cols or name in keys:
                continue
            expected = t.get(name, _MISSING)
            if expected is _MISSING:
                continue
            got = found[index[name]]
            if not _equal(expected, got):
                out.append(Mismatch(kind, key, name, expected, _jsonable(got)))
    for key in actual.keys() - seen:
        out.append(Mismatch(kind, key, "*", None, "row", "extra_row"))
    return out


def _compare_summary(
    con: duckdb.DuckDBPyConnection, schema: str, truth_rows: list[Mapping[str, Any]]
) -> list[Mismatch]:
    out = []
    for name, sql in SUMMARY_COUNTS.items():
        values = [r[name] for r in truth_rows if isinstance(r.get(name), int)]
        if not values:
            continue
        row = con.execute(sql.format(s=qualified(con, schema))).fetchone()
        got = int(row[0]) if row else 0
        if got != sum(values):
            out.append(Mismatch("summary", (), name, sum(values), got))
    return out


def _norm_key(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_micros(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        parsed = parse_rfc3339(value) if len(value) >= 19 and value[4] == "-" else None
        return to_micros(parsed[0]) if parsed else value
    return value


def _equal(expected: Any, actual: Any) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(actual, datetime):
        if not isinstance(expected, str):
            return False
        parsed = parse_rfc3339(expected)
        return parsed is not None and to_micros(parsed[0]) == to_micros(actual)
    if isinstance(actual, date):
        return str(expected) == actual.isoformat()
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if isinstance(actual, int | float | Decimal) and isinstance(expected, int | float):
        a, e = float(actual), float(expected)
        if isinstance(expected, int) and isinstance(actual, int):
            return actual == expected
        return math.isclose(a, e, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(actual, list | tuple) and isinstance(expected, list | tuple):
        return len(actual) == len(expected) and all(
            _equal(e, a) for e, a in zip(expected, actual, strict=True)
        )
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            _equal(expected[k], actual[k]) for k in expected
        )
    return bool(expected == actual)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
