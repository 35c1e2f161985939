"""The Definitions load, say what they should, and pass Dagster's own validation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from dagster import AssetKey, DagsterInstance, Definitions

from dagster_project.checks import GRAINS
from dagster_project.definitions import defs
from dagster_project.project import BACKFILL_JOB, REFRESH_JOB, build_definitions
from pipelines.analytics.models import MODELS
from pipelines.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
DAGSTER_BLOCK = """\
[tool.dagster]
module_name = "dagster_project.definitions"
code_location_name = "rwi_etl"
"""

ASSET_KEYS = [
    "analytics/agent_states", "analytics/calls", "analytics/conference_members",
    "analytics/conferences", "analytics/daily", "analytics/daily_queues",
    "analytics/ivr_node_visits", "analytics/ivr_paths", "analytics/queue_calls",
    "analytics/recordings", "analytics/sessions",
    "published/rwi_duckdb",
    "raw/agent", "raw/call", "raw/conference", "raw/deadletter", "raw/extension", "raw/ivr",
    "raw/media", "raw/metadata", "raw/originate", "raw/queue", "raw/recording", "raw/session",
    "raw/sip", "raw/supervisor", "raw/transcript", "raw/transfer", "raw/unknown",
]
RAW = [k.split("/")[1] for k in ASSET_KEYS if k.startswith("raw/")]
ANALYTICS = [k.split("/")[1] for k in ASSET_KEYS if k.startswith("analytics/")]
CHECKS = sorted(
    [f"raw/{t}:rows_equal_records_read" for t in RAW]
    + ["raw/deadletter:dead_letter_rate", "raw/deadletter:no_unknown_schemas"]
    + [f"analytics/{t}:no_duplicate_keys" for t in ANALYTICS]
    + ["analytics/calls:calls_ended_within_limit", "published/rwi_duckdb:freshness"]
)
BLOCKING = sorted(c for c in CHECKS if not c.endswith(("calls_ended_within_limit",
                                                       "freshness")))


def _graph(d: Definitions) -> Any:
    return d.resolve_asset_graph()


def test_asset_keys_and_checks_snapshot() -> None:
    graph = _graph(defs)
    assert sorted(k.to_user_string() for k in graph.get_all_asset_keys()) == ASSET_KEYS
    keys = sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys)
    assert keys == CHECKS
    blocking = sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys
                      if graph.get_check_spec(k).blocking)
    assert blocking == BLOCKING


def test_analytics_assets_follow_the_models_and_are_partitioned_by_day() -> None:
    graph = _graph(defs)
    assert sorted(m.name for m in MODELS) == ANALYTICS
    assert set(GRAINS) == set(ANALYTICS), "declare the key of every analytics table"
    for table in ANALYTICS:
        node = graph.get(AssetKey(["analytics", table]))
        assert node.partitions_def is not None
        assert node.partitions_def.get_partition_keys()[0] == "2024-01-01"
        assert AssetKey(["raw", "call"]) in node.parent_keys
        assert node.description and not node.description.startswith("`analytics.")
    published = graph.get(AssetKey(["published", "rwi_duckdb"]))
    assert published.parent_keys == {AssetKey(k.split("/")) for k in ASSET_KEYS
                                      if not k.startswith("published/")}


def test_jobs_sensor_schedule_and_the_duckdb_pool() -> None:
    refresh = defs.resolve_job_def(REFRESH_JOB)
    assert {n.name for n in refresh.nodes} == {"compact_kafka_to_lake",
                                               "build_analytics_tables", "publish_duckdb"}
    backfill = defs.resolve_job_def(BACKFILL_JOB)
    assert {n.name for n in backfill.nodes} == {"build_analytics_tables", "publish_duckdb"}
    merge = defs.resolve_job_def("merge_lake_files")
    for job in (refresh, backfill, merge):
        for node in job.nodes:
            assert getattr(node.definition, "pool", None) == "duckdb", node.name
    sensor = defs.resolve_sensor_def("kafka_offsets_sensor")
    assert sensor.minimum_interval_seconds == 15
    assert sensor.default_status.value == "RUNNING"
    assert sensor.job_name == REFRESH_JOB
    schedule = defs.resolve_schedule_def("nightly_lake_merge")
    assert schedule.cron_schedule == "15 3 * * *" and schedule.job_name == "merge_lake_files"
    assert schedule.default_status.value == "RUNNING"


def test_resources_come_from_the_settings(tmp_path: Path) -> None:
    settings = load_settings(environ={"RWI_DATA_DIR": str(tmp_path), "RWI_TOPIC_PREFIX": "acme",
                                      "KAFKA_BOOTSTRAP_SERVERS": "broker:9092"})
    built = build_definitions(settings)
    rwi = (built.resources or {})["rwi"]
    assert (rwi.data_dir, rwi.topic_prefix, rwi.bootstrap_servers) == (
        str(tmp_path), "acme", "broker:9092")
    assert rwi.settings().kafka.bootstrap == "broker:9092"
    raw_call = built.resolve_asset_graph().get(AssetKey(["raw", "call"]))
    assert (raw_call.metadata or {})["kafka_topic"] == "acme.call.v1"


def test_instance_config_gives_duckdb_one_slot(tmp_path: Path) -> None:
    shutil.copy(REPO / "dagster_project" / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 1
        assert pools.pool_granularity is not None and pools.pool_granularity.value == "op"


def _validate(home: Path, cwd: Path, *target: str) -> str:
    """``dagster definitions validate`` with the project's defaults (no RWI_* variables)."""
    shutil.copy(REPO / "dagster_project" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "RWI_TOPIC_PREFIX", "RWI_DATA_DIR")}
    env["DAGSTER_HOME"] = str(home)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", *target],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "All code locations passed validation" in output
    return output


def test_dagster_definitions_validate(tmp_path: Path) -> None:
    _validate(tmp_path, REPO, "-m", "dagster_project.definitions")


def test_the_pyproject_block_loads_the_definitions_without_flags(tmp_path: Path) -> None:
    """What ``dagster dev`` with no flags reads: ``[tool.dagster]`` of ./pyproject.toml."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(DAGSTER_BLOCK, encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    assert "rwi_etl" in _validate(home, project)
    ours = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    if "dagster" in ours.get("tool", {}):
        assert ours["tool"]["dagster"] == tomllib.loads(DAGSTER_BLOCK)["tool"]["dagster"]
        _validate(home, REPO)
