"""One in-process run of the refresh job (what ``rwi-etl run`` does), and what it did."""

from dataclasses import dataclass, field
from typing import Any

from dagster import AssetCheckSeverity, DagsterInstance, ExecuteInProcessResult

from dagster_project.project import REFRESH_JOB, build_definitions
from dagster_project.publish import PUBLISHED_KEY
from pipelines.settings import Settings

_SUMMARY_KEYS = ("dagster/row_count", "messages_read", "rows_added", "lag", "build_mode",
                 "bytes")


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    asset: str
    check: str
    passed: bool
    severity: str
    blocking: bool
    description: str | None

    def to_json(self) -> dict[str, Any]:
        return {"asset": self.asset, "check": self.check, "passed": self.passed,
                "severity": self.severity, "blocking": self.blocking,
                "description": self.description}


@dataclass(slots=True)
class RunReport:
    """What one refresh run did: assets, checks, failures, and whether it published."""

    run_id: str
    success: bool
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    published: str | None = None

    @property
    def blocking_failures(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.passed and c.blocking
                and c.severity == AssetCheckSeverity.ERROR.value]

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "success": self.success, "published": self.published,
                "assets": self.assets, "checks": [c.to_json() for c in self.checks],
                "failed_steps": self.failures, "skipped_steps": self.skipped}


def _plain(value: Any) -> Any:
    inner = getattr(value, "value", value)
    return inner if isinstance(inner, int | float | str | bool) or inner is None else str(inner)


def not_run(result: ExecuteInProcessResult) -> list[str]:
    """Steps of the run that never started (an upstream step failed, or a blocking check)."""
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    return sorted(n.name for n in result.job_def.nodes if n.name not in started)


def report_of(result: ExecuteInProcessResult) -> RunReport:
    """Condense an in-process result into what an operator wants to read."""
    report = RunReport(run_id=result.run_id, success=result.success)
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.partition is not None:
            continue
        name = mat.asset_key.to_user_string()
        report.assets[name] = {k: _plain(v) for k, v in mat.metadata.items()
                               if k in _SUMMARY_KEYS}
        if mat.asset_key == PUBLISHED_KEY:
            path = mat.metadata.get("path")
            report.published = str(getattr(path, "value", path)) if path is not None else None
    for evaluation in result.get_asset_check_evaluations():
        report.checks.append(CheckOutcome(
            asset=evaluation.asset_key.to_user_string(), check=evaluation.check_name,
            passed=evaluation.passed, severity=evaluation.severity.value,
            blocking=bool(evaluation.blocking),
            description=evaluation.description))
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        cause = error.cause if error and error.cause else error
        report.failures[event.step_key or "?"] = (cause.message.strip() if cause else "failed")
    report.skipped = not_run(result)
    return report


def run_refresh(settings: Settings, *, full_rebuild: bool = False,
                instance: DagsterInstance | None = None, log_level: str = "INFO") -> RunReport:
    """Execute the refresh job in this process (the job the sensor requests)."""
    defs = build_definitions(settings)
    job = defs.resolve_job_def(REFRESH_JOB)
    config = {
        "ops": {"build_analytics_tables": {"config": {"full_rebuild": full_rebuild}}},
        "loggers": {"console": {"config": {"log_level": log_level}}},
    }
    owned = instance is None
    instance = instance or DagsterInstance.ephemeral()
    try:
        result = job.execute_in_process(run_config=config, instance=instance,
                                        raise_on_error=False, tags={"rwi/launched_by": "cli"})
    finally:
        if owned:
            instance.dispose()
    return report_of(result)
