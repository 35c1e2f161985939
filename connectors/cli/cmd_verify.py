"""``rwi-etl verify``: compare the analytics tables with the simulator's ground truth."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import duckdb

from pipelines.analytics import build_analytics
from pipelines.analytics.verify import KINDS, verify_report
from pipelines.errors import ConfigError
from pipelines.settings import Settings
from pipelines.warehouse import WarehousePaths


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "verify",
        help="compare the analytics tables with a simulator ground-truth file",
        description=(
            "Compare every field of the analytics tables (calls, sessions, IVR paths and node "
            "visits, recordings, queue calls, agent states) with the ground truth written by "
            "'rwi-etl simulate --truth FILE'. Prints each mismatch; exit code 0 only when "
            "there is none, 1 otherwise. Reads the published database "
            "(<data_dir>/rwi.duckdb) unless --db is given."
        ),
    )
    parser.add_argument("--truth", type=Path, required=True, help="ground truth (JSON lines)")
    parser.add_argument("--db", type=Path, default=None, help="DuckDB file to check")
    parser.add_argument("--schema", default="analytics", help="schema of the analytics tables")
    parser.add_argument(
        "--build",
        metavar="SOURCE_SCHEMA",
        default=None,
        help="first rebuild the analytics tables from this raw schema (e.g. staging); "
        "opens the database for writing",
    )
    parser.add_argument(
        "--kind",
        action="append",
        choices=sorted([*KINDS, "summary"]),
        help="only these kinds of truth rows (repeatable)",
    )
    parser.add_argument(
        "--limit", type=int, default=50, help="mismatches to print (default 50; 0 = all)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    db = args.db or WarehousePaths.under(settings.data_dir).published
    if not db.exists():
        raise ConfigError(f"no database at {db} (build it with 'rwi-etl run', or pass --db)")
    if not args.truth.exists():
        raise ConfigError(f"no truth file at {args.truth}")
    con = duckdb.connect(str(db), read_only=args.build is None)
    try:
        if args.build is not None:
            build_analytics(con, args.build, args.schema)
        report = verify_report(con, args.truth, args.schema, kinds=args.kind)
    finally:
        con.close()
    by_field = Counter(f"{m.kind}.{m.field} ({m.problem})" for m in report.mismatches)
    if args.json:
        doc = {
            "ok": report.ok,
            "database": str(db),
            "truth": str(args.truth),
            "rows": report.rows,
            "fields": report.fields,
            "skipped_kinds": report.skipped_kinds,
            "mismatch_count": len(report.mismatches),
            "mismatches_by_field": dict(by_field.most_common()),
            "mismatches": [
                m.to_json() for m in report.mismatches[: args.limit or len(report.mismatches)]
            ],
        }
        print(json.dumps(doc, indent=2, default=str))
        return 0 if report.ok else 1
    for kind, count in sorted(report.rows.items()):
        fields = len(report.fields.get(kind, []))
        bad = sum(1 for m in report.mismatches if m.kind == kind)
        print(f"{kind:16} {count:8} rows x {fields:2} fields   {bad:6} mismatches")
    for kind, count in sorted(report.skipped_kinds.items()):
        print(f"{kind:16} {count:8} rows (not a table this command checks)")
    if report.ok:
        print("OK: the analytics tables equal the ground truth")
        return 0
    print(f"\n{len(report.mismatches)} mismatches; by field:", file=sys.stderr)
    for name, count in by_field.most_common():
        print(f"  {count:7}  {name}", file=sys.stderr)
    shown = report.mismatches[: args.limit or len(report.mismatches)]
    for m in shown:
        print(f"  {m}", file=sys.stderr)
    if len(shown) < len(report.mismatches):
        print(f"  … {len(report.mismatches) - len(shown)} more (--limit 0 shows all)",
              file=sys.stderr)
    return 1
