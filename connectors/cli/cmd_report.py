"""``rwi-etl report``: a static HTML report with charts, from the published database."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.errors import ConfigError
from pipelines.report.build import write_report
from pipelines.settings import Settings
from pipelines.warehouse import WarehousePaths


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "report",
        help="write the HTML report (calls, queues, IVR, recordings, data quality)",
        description=(
            "Write a self-contained HTML report with inline SVG charts — calls per hour by "
            "outcome, answer and abandon rates, queue wait distribution, IVR funnel and "
            "drop-off nodes, recordings coverage, data-quality status — from the published "
            "DuckDB database under RWI_DATA_DIR (opened read-only). Open it in any browser, "
            "offline."
        ),
    )
    parser.add_argument(
        "file",
        nargs="?",
        type=Path,
        default=None,
        help="output file (default <RWI_DATA_DIR>/report.html)",
    )
    parser.add_argument(
        "--db", type=Path, default=None, help="database (default: the published one)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    db = args.db or WarehousePaths.under(settings.data_dir).published
    if not db.exists():
        raise ConfigError(f"no database at {db}; run `rwi-etl run` (or `rwi-etl compact`) first")
    out = args.file or Path(settings.data_dir) / "report.html"
    data = write_report(db, out)
    legs = data.kpis.get("call legs", 0)
    print(f"report written to {out} ({legs} call legs, {len(data.events_per_category)} categories)")
    return 0
