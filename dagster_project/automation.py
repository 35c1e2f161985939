"""What runs by itself: the offsets sensor (new data → a refresh run), the nightly merge.

The sensor only observes: it compares Kafka's end offsets with the offsets the lake stored
with its files and asks for a bounded run when there is something new. It commits nothing,
so a failed run loses nothing — the next one starts from the lake's offsets again.
"""


import json
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from dagster_project.offsets import Lag, Offsets, database_offsets, end_offsets, lake_offsets
from dagster_project.publish import FRESHNESS_CHECK, PUBLISHED_KEY, evaluate_freshness
from dagster_project.resources import RwiResource

SENSOR_INTERVAL_S = 15
FAILURE_BACKOFF_S = 30.0
REPUBLISH_BACKOFF_S = 300.0
FRESHNESS_REPORT_EVERY_S = 300.0
MERGE_CRON = "15 3 * * *"
_ACTIVE = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
           DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def _active_run(context: SensorEvaluationContext, job_names: list[str]) -> str | None:
    for name in job_names:
        runs = context.instance.get_runs(filters=RunsFilter(job_name=name, statuses=_ACTIVE),
                                         limit=1)
        if runs:
            return f"{name} run {runs[0].run_id[:8]} is {runs[0].status.value.lower()}"
    return None


def _recent_failure(context: SensorEvaluationContext, job_name: str, now: float,
                    backoff_s: float) -> str | None:
    records = context.instance.get_run_records(filters=RunsFilter(job_name=job_name), limit=1)
    if not records:
        return None
    record = records[0]
    if record.dagster_run.status == DagsterRunStatus.FAILURE and record.end_time is not None \
            and now - record.end_time < backoff_s:
        return f"the last {job_name} run failed {now - record.end_time:.0f}s ago; waiting"
    return None


def _freshness_event(rwi: RwiResource, cursor: dict[str, Any], now: datetime,
                     ends: Offsets, published: Offsets) -> AssetCheckEvaluation | None:
    """A freshness evaluation when the verdict changed or the last one is getting old."""
    fresh = evaluate_freshness(rwi, now, ends, published)
    last_at = float(cursor.get("freshness_at", 0.0))
    if cursor.get("fresh") == fresh.passed and now.timestamp() - last_at < \
            FRESHNESS_REPORT_EVERY_S:
        return None
    cursor["fresh"] = fresh.passed
    cursor["freshness_at"] = now.timestamp()
    return AssetCheckEvaluation(
        asset_key=PUBLISHED_KEY, check_name=FRESHNESS_CHECK, passed=fresh.passed,
        metadata={**fresh.metadata, "reported_by": "kafka_offsets_sensor"},
        severity=AssetCheckSeverity.ERROR, description=fresh.description)


def build_offsets_sensor(refresh_job: Any, merge_job_name: str) -> Any:
    @sensor(
        name="kafka_offsets_sensor",
        job=refresh_job,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description="Every 15 s: compares each partition's end offset in Kafka with the offset "
        "the lake stored with its files, and requests a refresh run when messages are waiting "
        "and no refresh or merge run is queued or in progress (30 s after a failed run). "
        "Also requests one, at most every 5 minutes after a failure, when the lake holds "
        "messages the published database lacks, and reports the published database's "
        "freshness between runs.",
    )
    def kafka_offsets_sensor(context: SensorEvaluationContext, rwi: RwiResource) -> SensorResult:
        now = datetime.now(UTC)
        cursor: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
        settings = rwi.settings()
        ends = end_offsets(settings)
        lake = lake_offsets(settings)
        published = database_offsets(rwi.paths().published)
        events = [e for e in [_freshness_event(rwi, cursor, now, ends, published)]
                  if e is not None]
        waiting = Lag(ends, lake)
        unpublished = Lag(lake, published)
        if waiting.total:
            reason, backoff = f"{waiting.total} messages waiting in Kafka", FAILURE_BACKOFF_S
        elif unpublished.total:
            reason = f"{unpublished.total} messages in the lake not yet published"
            backoff = REPUBLISH_BACKOFF_S
        else:
            reason, backoff = "", 0.0
        why_not = (None if reason else "the lake and the published database are complete") \
            or _active_run(context, [refresh_job.name, merge_job_name]) \
            or _recent_failure(context, refresh_job.name, now.timestamp(), backoff)
        if why_not:
            return SensorResult(skip_reason=SkipReason(why_not), asset_events=events,
                                cursor=json.dumps(cursor))
        context.log.info("requesting a refresh: %s", reason)
        request = RunRequest(tags={"rwi/pending_messages": str(waiting.total),
                                   "rwi/reason": reason})
        return SensorResult(run_requests=[request], asset_events=events,
                            cursor=json.dumps(cursor))

    return kafka_offsets_sensor


def merge_schedule(merge_job: Any) -> ScheduleDefinition:
    return ScheduleDefinition(
        name="nightly_lake_merge", job=merge_job, cron_schedule=MERGE_CRON,
        execution_timezone="UTC", default_status=DefaultScheduleStatus.RUNNING,
        description="03:15 UTC: rewrite the day's many small lake files (one per frequent run) "
        "into target-sized sorted files.")
