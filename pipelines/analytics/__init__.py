"""Analytics tables over the raw event relations: build (full or incremental) and verify."""

from pipelines.analytics.build import BuildResult, build_analytics
from pipelines.analytics.scope import Touched, touched_by_events, touched_since
from pipelines.analytics.verify import Mismatch, VerifyReport, verify, verify_report

__all__ = [
    "BuildResult",
    "Mismatch",
    "Touched",
    "VerifyReport",
    "build_analytics",
    "touched_by_events",
    "touched_since",
    "verify",
    "verify_report",
]
