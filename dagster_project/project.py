"""How the definitions are assembled for one deployment's settings.

Assets: ``raw/<table>`` (one per category topic, and ``raw/deadletter``) from one bounded
compaction run; ``analytics/<table>`` (partitioned by day) built from them;
``published/rwi_duckdb``, the read-only copy, replaced only when the blocking checks passed.
Every step that writes DuckDB runs in the ``duckdb`` pool; ``dagster.yaml`` in this folder
limits it to one slot.
"""

from __future__ import annotations

from dagster import (
    AssetsDefinition,
    AssetSelection,
    Definitions,
    define_asset_job,
    in_process_executor,
)

from dagster_project.analytics import build_analytics_assets
from dagster_project.automation import build_offsets_sensor, merge_schedule
from dagster_project.merge import MERGE_JOB, merge_lake_files
from dagster_project.publish import build_published_asset
from dagster_project.raw import build_raw_assets
from dagster_project.resources import RwiResource
from pipelines.settings import Settings

REFRESH_JOB = "refresh_warehouse"
BACKFILL_JOB = "rebuild_analytics_days"


def build_assets(settings: Settings) -> list[AssetsDefinition]:
    """The raw, analytics and published assets (for the topics under the settings' prefix)."""
    raw = build_raw_assets(settings.topic_prefix)
    analytics = build_analytics_assets()
    return [raw, analytics, build_published_asset([*raw.keys, *analytics.keys])]


def build_definitions(settings: Settings) -> Definitions:
    """Everything, bound to one deployment's settings."""
    raw, analytics, published = build_assets(settings)
    refresh = define_asset_job(
        REFRESH_JOB,
        selection=AssetSelection.assets(raw, analytics, published),
        executor_def=in_process_executor,
        description="Kafka → lake → raw.* → analytics.* (incremental) → checks → publish "
        "rwi.duckdb. One bounded run; requested by kafka_offsets_sensor when messages wait, "
        "and what `rwi-etl run` executes in process.",
    )
    backfill = define_asset_job(
        BACKFILL_JOB,
        selection=AssetSelection.assets(analytics, published),
        executor_def=in_process_executor,
        description="Rebuild the analytics rows of a range of days from the raw layer, check "
        "them and publish. Launch a backfill over the days to redo.",
    )
    return Definitions(
        assets=[raw, analytics, published],
        jobs=[refresh, backfill, merge_lake_files],
        sensors=[build_offsets_sensor(refresh, MERGE_JOB)],
        schedules=[merge_schedule(merge_lake_files)],
        resources={"rwi": RwiResource.from_settings(settings)},
    )

