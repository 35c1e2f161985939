"""``rwi-etl compact [--merge] [--json]``: the raw layer (Kafka → Parquet lake → DuckDB)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tqdm import tqdm

from pipelines.compact import CompactionError, CompactSettings, RunSummary, run_compact, run_merge
from pipelines.settings import Settings

_DESCRIPTION = """\
One bounded compaction run. Every partition of the topics under RWI_TOPIC_PREFIX is read
from the offset stored with the lake up to the end offset seen when the run starts, and
written to the Parquet lake in <RWI_DATA_DIR>/lake (zstd, Hive-partitioned by event date,
files named <topic>+<partition>+<first>-<last>.parquet). Files are committed atomically
with the offsets in lake/_manifest.json, so a run can be interrupted at any point and run
again without losing or doubling a row. The new rows are then loaded into raw.<category>
of the working database (<RWI_DATA_DIR>/warehouse/work.duckdb), the run is recorded in
meta.runs, and a read-only copy is published atomically as <RWI_DATA_DIR>/rwi.duckdb for
SQL users and BI tools.

With --merge, Kafka is not read: small lake files of each table and day are rewritten into
target-sized files sorted by (event time, event id) and swapped in atomically.

Exit codes: 0 done; 1 failed (committed work is kept; run again); 2 configuration error;
3 Kafka unreachable; 4 another compaction, merge or database writer is running."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``compact`` command."""
    parser = sub.add_parser(
        "compact", help="land Kafka topics in the Parquet lake and DuckDB (exactly once)",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--merge", action="store_true",
                        help="merge small lake files into sorted target-sized files instead")
    parser.add_argument("--json", action="store_true",
                        help="print the run summary as one JSON object")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="messages per batch and file (default 100000); bounds memory")
    parser.add_argument("--no-publish", action="store_true",
                        help="update the working database but do not publish rwi.duckdb")
    parser.set_defaults(handler=_run)


class _Bar:
    """tqdm on stderr, shown only on a terminal."""

    def __init__(self) -> None:
        self.bar: tqdm[Any] | None = None

    def planned(self, total: int) -> None:
        self.bar = tqdm(total=total, desc="compacting", unit=" msg", unit_scale=True,
                        file=sys.stderr, disable=not sys.stderr.isatty())

    def advanced(self, offsets: int) -> None:
        if self.bar is not None:
            self.bar.update(offsets)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run(args: argparse.Namespace, settings: Settings) -> int:
    overrides: dict[str, Any] = {"publish": not args.no_publish}
    if args.batch_size is not None:
        overrides["max_batch_messages"] = args.batch_size
    options = CompactSettings(**overrides)
    bar = _Bar()
    try:
        if args.merge:
            summary = run_merge(settings, options)
        else:
            summary = run_compact(settings, options, progress=bar)
    except CompactionError as exc:
        bar.close()
        _print(exc.summary, args.json)
        raise
    bar.close()
    _print(summary, args.json)
    return 0


def _print(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.to_json(), sort_keys=True))
        return
    if summary.kind == "merge":
        _print_merges(summary)
    else:
        _print_topics(summary)
    duration = ((summary.finished_at - summary.started_at).total_seconds()
                if summary.finished_at else 0.0)
    print(f"run {summary.run_id}: {summary.status} in {duration:.1f}s"
          + (f"; published {summary.published}" if summary.published else ""))
    for topic in summary.topics():
        if topic["skipped"]:
            print(f"warning: {topic['topic']}: {topic['skipped']} offsets were deleted by "
                  "retention before they were compacted", file=sys.stderr)


def _print_topics(summary: RunSummary) -> None:
    header = f"{'topic':<34} {'messages':>10} {'rows':>10} {'files':>6} {'dead':>6}  offsets"
    print(header)
    total = {"messages": 0, "rows": 0, "files": 0, "dead_letters": 0}
    for topic in summary.topics():
        offsets = " ".join(f"{p}:{o['from']}→{o['to']}"
                           for p, o in sorted(topic["partitions"].items(), key=lambda i: int(i[0])))
        print(f"{topic['topic']:<34} {topic['messages']:>10,} {topic['rows']:>10,} "
              f"{topic['files']:>6,} {topic['dead_letters']:>6,}  {offsets}")
        for key in total:
            total[key] += topic[key]
    print(f"{'total':<34} {total['messages']:>10,} {total['rows']:>10,} {total['files']:>6,} "
          f"{total['dead_letters']:>6,}")
    added = {t: n for t, n in summary.warehouse_rows.items() if n}
    print("rows added to raw.*: " + (", ".join(f"{t} +{n:,}" for t, n in sorted(added.items()))
                                     or "none"))


def _print_merges(summary: RunSummary) -> None:
    if not summary.merges:
        print("nothing to merge")
        return
    print(f"{'table':<12} {'day':<10} {'files in':>8} {'out':>4} {'rows':>10} "
          f"{'MB in':>8} {'MB out':>8}")
    for m in summary.merges:
        print(f"{m.table:<12} {m.date:<10} {m.files_in:>8} {m.files_out:>4} {m.rows:>10,} "
              f"{m.bytes_in / 1e6:>8.2f} {m.bytes_out / 1e6:>8.2f}")
