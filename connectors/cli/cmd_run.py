"""``rwi-etl run``: one in-process run of the Dagster refresh job (raw, analytics, checks)."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING

from pipelines.settings import Settings

if TYPE_CHECKING:
    from dagster_project.runner import RunReport

_DESCRIPTION = """\
Run the Dagster job `refresh_warehouse` once, in this process — the same job the
kafka_offsets_sensor requests under `dagster dev`:

  1. compaction: every partition of the topics under RWI_TOPIC_PREFIX, from the offsets
     stored with the lake up to the end offsets seen at the start, into the Parquet lake and
     raw.* of the working database (<RWI_DATA_DIR>/warehouse/work.duckdb);
  2. the raw checks: rows written equal messages read, dead-letter rate, unknown schemas;
  3. the analytics tables, recomputed for the calls, agents, conferences and days the new
     events name (or in full with --full-rebuild), and their checks (no duplicate keys;
     calls still open after hours are flagged);
  4. only when no blocking check failed: the working database is published atomically as
     <RWI_DATA_DIR>/rwi.duckdb, and its freshness is checked.

With DAGSTER_HOME set, the run is recorded in that Dagster instance (and shows in the UI).

Exit codes: 0 published; 1 a step failed or a blocking check failed (nothing published);
2 configuration error."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``run`` command."""
    parser = sub.add_parser(
        "run", help="one in-process run of the Dagster job: Kafka → lake → DuckDB → checks",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--full-rebuild", action="store_true",
                        help="rebuild every analytics table from the whole raw layer")
    parser.add_argument("--json", action="store_true",
                        help="print the run report as one JSON object")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from dagster import DagsterInstance

    from dagster_project.runner import run_refresh

    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
    level = ("WARNING", "INFO", "DEBUG")[min(getattr(args, "verbose", 0), 2)]
    try:
        report = run_refresh(settings, full_rebuild=args.full_rebuild, instance=instance,
                             log_level=level)
    finally:
        if instance is not None:
            instance.dispose()
    if args.json:
        print(json.dumps(report.to_json(), sort_keys=True, default=str))
    else:
        _print(report)
    return 0 if report.success and report.published else 1


def _total(report: RunReport, prefix: str, key: str) -> int:
    return sum(int(meta.get(key) or 0) for name, meta in report.assets.items()
               if name.startswith(prefix))


def _print(report: RunReport) -> None:
    raw = [n for n in report.assets if n.startswith("raw/")]
    if raw:
        print(f"raw:        {_total(report, 'raw/', 'messages_read'):,} messages read, "
              f"{_total(report, 'raw/', 'rows_added'):,} rows added to raw.* "
              f"({_total(report, 'raw/', 'dagster/row_count'):,} in all), "
              f"lag {_total(report, 'raw/', 'lag'):,}")
    tables = sorted((n.removeprefix("analytics/"), m) for n, m in report.assets.items()
                    if n.startswith("analytics/"))
    if tables:
        mode = tables[0][1].get("build_mode", "?")
        rows = ", ".join(f"{t} {int(m.get('dagster/row_count') or 0):,}" for t, m in tables)
        print(f"analytics:  {mode} build; rows: {rows}")
    failed = [c for c in report.checks if not c.passed]
    print(f"checks:     {len(report.checks) - len(failed)} passed, {len(failed)} failed")
    for c in failed:
        kind = "blocking" if c.blocking else c.severity.lower()
        print(f"  FAILED ({kind}) {c.asset} {c.check}: {c.description or ''}")
    for step, message in sorted(report.failures.items()):
        print(f"step {step} failed: {message.splitlines()[0] if message else ''}")
    if report.skipped:
        print(f"skipped:    {', '.join(sorted(report.skipped))}")
    where = f"published {report.published}" if report.published else "NOT published"
    print(f"run {report.run_id}: {where}")
