"""The small-file merge as its own job: frequent refresh runs leave many small lake files;
the merge rewrites each table's day into target-sized sorted files, swapped in atomically."""


from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetObservation,
    MetadataValue,
    OpExecutionContext,
    Output,
    RetryRequested,
    in_process_executor,
    job,
    op,
)

from dagster_project import metadata as md
from dagster_project.raw import DUCKDB_POOL, raw_key
from dagster_project.resources import RwiResource
from pipelines.compact import CompactSettings, RunSummary, lake_root, run_merge
from pipelines.errors import RwiEtlError
from pipelines.lake import Lake

MERGE_JOB = "merge_lake_files"


def _merge(rwi: RwiResource) -> RunSummary:
    try:
        # Not published here: the next refresh publishes once its checks pass.
        return run_merge(rwi.settings(), CompactSettings(publish=False))
    except RwiEtlError as exc:
        if exc.retriable:
            raise RetryRequested(max_retries=5, seconds_to_wait=30) from exc
        raise


@op(pool=DUCKDB_POOL, description="Merge the lake's small files (one merge run).")
def merge_small_files(context: OpExecutionContext, rwi: RwiResource) -> Iterator[Any]:
    summary = _merge(rwi)
    manifest = Lake(lake_root(rwi.settings())).read_manifest()
    merged: dict[str, tuple[int, int]] = {}
    for m in summary.merges:
        files_in, files_out = merged.get(m.table, (0, 0))
        merged[m.table] = (files_in + m.files_in, files_out + m.files_out)
    for table, (files_in, files_out) in sorted(merged.items()):
        files = manifest.table_files(table)
        yield AssetObservation(asset_key=raw_key(table), metadata={
            "lake_files": len(files), "lake_bytes": sum(f.bytes for f in files),
            "merged_files_in": files_in, "merged_files_out": files_out,
            "merge_run": summary.run_id})
    context.log.info("merge %s: %d day(s) of files merged", summary.run_id, len(summary.merges))
    yield Output(None, metadata={
        "merge_run": summary.run_id,
        "days_merged": len(summary.merges),
        "files_in": sum(m.files_in for m in summary.merges),
        "files_out": sum(m.files_out for m in summary.merges),
        "merges": MetadataValue.md(md.markdown_table(
            ["table", "day", "files in", "files out", "rows", "bytes in", "bytes out"],
            [(m.table, m.date, m.files_in, m.files_out, m.rows, m.bytes_in, m.bytes_out)
             for m in summary.merges]) if summary.merges else "_nothing to merge_"),
    })


@job(name=MERGE_JOB, executor_def=in_process_executor,
     description="Rewrite small lake files into target-sized sorted files (daily).")
def merge_lake_files() -> None:
    merge_small_files()
