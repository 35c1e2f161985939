"""Every asset materialized in process over a real Kafka, a tmp lake and tmp DuckDB files;
the checks pass on clean traffic and fail on a duplicate, a gap, dead letters, an unknown
schema."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    ExecuteInProcessResult,
    RunRequest,
    SensorResult,
    build_sensor_context,
    materialize,
)

from connectors.cli.main import main as rwi_etl
from dagster_project.definitions import defs
from dagster_project.merge import merge_lake_files
from dagster_project.project import BACKFILL_JOB, REFRESH_JOB, build_assets, build_definitions
from dagster_project.resources import RwiResource
from dagster_project.runner import not_run
from pipelines.analytics.verify import verify_report
from pipelines.catalog import topic_for
from pipelines.encode import OutgoingMessage
from pipelines.settings import Settings
from pipelines.warehouse import WarehousePaths
from tests.dagster.conftest import Traffic, read_bodies, simulate

pytestmark = pytest.mark.kafka
SIM_DAY = "2026-11-02"  # the simulator's default start


def refresh(settings: Settings, instance: DagsterInstance, **kwargs: Any
            ) -> ExecuteInProcessResult:
    return materialize(build_assets(settings), instance=instance, raise_on_error=False,
                       resources={"rwi": RwiResource.from_settings(settings)}, **kwargs)


def check_results(result: ExecuteInProcessResult) -> dict[str, bool]:
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed
            for e in result.get_asset_check_evaluations()}


def metadata(result: ExecuteInProcessResult, key: str, partition: str | None = None
             ) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key.to_user_string() == key and mat.partition == partition:
            return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    raise AssertionError(f"no materialization of {key} ({partition})")


def published(settings: Settings) -> Path:
    return WarehousePaths.under(settings.data_dir).published


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_every_asset_over_simulated_traffic_then_incremental(
        dagster_settings: Settings, traffic: Traffic, tmp_path: Path) -> None:
    bodies_file, truth = simulate(tmp_path, 150, 11, "--duplicates", "0.05")
    bodies = read_bodies(bodies_file)
    cut = int(len(bodies) * 0.7)
    sent = traffic.send(bodies[:cut])
    instance = DagsterInstance.ephemeral()

    first = refresh(dagster_settings, instance)
    assert first.success
    checks = check_results(first)
    # Cut mid-stream, some calls have not ended yet: flagged (a warning), still published.
    assert checks.pop("analytics/calls:calls_ended_within_limit") is False
    assert len(checks) == 31 and all(checks.values()), checks
    raw_call = metadata(first, "raw/call")
    assert raw_call["messages_read"] > 0 and raw_call["lake_bytes"] > 0
    assert "| partition | from | to |" in raw_call["offsets"] and raw_call["lag"] == 0
    added = sum(metadata(first, f"raw/{t}")["rows_added"] for t in (
        "call", "transfer", "media", "recording", "ivr", "queue", "agent", "extension",
        "metadata", "conference", "supervisor", "originate", "sip", "session", "transcript",
        "unknown", "deadletter"))
    assert added == sent
    calls = metadata(first, "analytics/calls")
    assert calls["build_mode"] == "full" and calls["dagster/row_count"] > 100
    assert "answered" in calls["outcomes"] and f"{SIM_DAY} 08:00" in calls["calls_per_hour"]
    assert "| call_id |" in calls["preview"]
    assert metadata(first, "analytics/calls", SIM_DAY)  # the day's partition is recorded
    assert metadata(first, "published/rwi_duckdb")["analytics_rows"] > 0

    idle = refresh(dagster_settings, instance)
    assert idle.success and metadata(idle, "analytics/calls")["build_mode"] == "noop"
    assert metadata(idle, "raw/call")["messages_read"] == 0

    traffic.send(bodies[cut:])
    second = refresh(dagster_settings, instance)
    assert second.success and all(check_results(second).values())
    assert metadata(second, "analytics/calls")["build_mode"] == "incremental"
    con = duckdb.connect(str(published(dagster_settings)), read_only=True)
    try:
        report = verify_report(con, truth)
    finally:
        con.close()
    assert report.mismatches == [], report.mismatches[:5]
    assert report.rows["call"] > 150

    backfill_job = build_definitions(dagster_settings).resolve_job_def(BACKFILL_JOB)
    backfill = backfill_job.execute_in_process(partition_key=SIM_DAY, instance=instance,
                                               raise_on_error=False)
    assert backfill.success and all(check_results(backfill).values())
    assert metadata(backfill, "analytics/calls", SIM_DAY)["build_reason"] == \
        f"days {SIM_DAY}..{SIM_DAY}"

    merged = merge_lake_files.execute_in_process(
        instance=instance, resources={"rwi": RwiResource.from_settings(dagster_settings)})
    assert merged.success
    observed = {e.asset_key for e in merged.get_asset_observation_events()}
    assert AssetKey(["raw", "call"]) in observed
    assert query(published(dagster_settings), "SELECT count(*) FROM raw.call")[0][0] == \
        metadata(second, "raw/call")["dagster/row_count"]


def _run_cli(monkeypatch: pytest.MonkeyPatch, settings: Settings,
             capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka.bootstrap)
    monkeypatch.setenv("RWI_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("RWI_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    capsys.readouterr()
    code = rwi_etl(["run", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_cli_run_and_a_duplicate_that_survives_into_a_modeled_table(
        dagster_settings: Settings, traffic: Traffic, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    bodies_file, _ = simulate(tmp_path, 40, 21)
    traffic.send(read_bodies(bodies_file))
    code, report = _run_cli(monkeypatch, dagster_settings, capsys)
    assert code == 0 and report["success"] and report["published"]
    assert all(c["passed"] for c in report["checks"])
    db = published(dagster_settings)
    calls_before = query(db, "SELECT count(*) FROM analytics.calls")[0][0]

    # A slice an incremental run failed to replace: the same call twice in analytics.calls.
    work = duckdb.connect(str(WarehousePaths.under(dagster_settings.data_dir).work))
    work.execute("INSERT INTO analytics.calls SELECT * FROM analytics.calls LIMIT 1")
    work.close()
    more, _ = simulate(tmp_path, 5, 22)  # other calls: the duplicated slice is not rebuilt
    traffic.send(read_bodies(more))
    code, report = _run_cli(monkeypatch, dagster_settings, capsys)
    assert code == 1 and not report["published"]
    failed = [(c["asset"], c["check"], c["blocking"]) for c in report["checks"]
              if not c["passed"]]
    assert failed == [("analytics/calls", "no_duplicate_keys", True)]
    assert "publish_duckdb" in report["skipped_steps"]
    assert query(db, "SELECT count(*) FROM analytics.calls")[0][0] == calls_before
    assert query(db, "SELECT count(*) - count(DISTINCT call_id) FROM analytics.calls") == [(0,)]

    code, report = _run_cli(monkeypatch, dagster_settings, capsys, "--full-rebuild")
    assert code == 0 and all(c["passed"] for c in report["checks"])
    assert query(db, "SELECT count(*) - count(DISTINCT call_id) FROM analytics.calls") == [(0,)]
    assert query(db, "SELECT count(*) FROM analytics.calls")[0][0] > calls_before


def test_dead_letters_over_the_threshold_block_publishing(
        dagster_settings: Settings, traffic: Traffic, tmp_path: Path) -> None:
    bodies_file, _ = simulate(tmp_path, 5, 31)
    good = read_bodies(bodies_file)[:100]
    garbage = [b'{"event_type": "call_ringing", ' + str(i).encode() for i in range(20)]
    sent = traffic.send(good + garbage)
    result = refresh(dagster_settings, DagsterInstance.ephemeral())
    assert not result.success
    checks = check_results(result)
    assert checks["raw/deadletter:dead_letter_rate"] is False
    assert checks["raw/deadletter:no_unknown_schemas"] is True
    assert all(v for k, v in checks.items() if k != "raw/deadletter:dead_letter_rate")
    assert not_run(result) == ["build_analytics_tables", "publish_duckdb"]
    assert not published(dagster_settings).exists()
    meta = next(e for e in result.get_asset_check_evaluations()
                if e.check_name == "dead_letter_rate").metadata
    assert meta["dead_letters"].value == 20 and meta["messages"].value == sent


def test_an_unknown_schema_fingerprint_blocks_publishing(
        dagster_settings: Settings, traffic: Traffic, tmp_path: Path) -> None:
    bodies_file, _ = simulate(tmp_path, 3, 41)
    messages = traffic.messages(read_bodies(bodies_file))
    # Single-object framing with a fingerprint no schema has (a producer ahead of the lake).
    alien = OutgoingMessage(topic=topic_for("call", dagster_settings.topic_prefix),
                            key=b"call-x", value=b"\xc3\x01" + bytes(range(8)) + b"\x02\x04",
                            headers=[])
    traffic.produce([*messages, alien])
    result = refresh(dagster_settings, DagsterInstance.ephemeral())
    checks = check_results(result)
    assert checks["raw/deadletter:no_unknown_schemas"] is False
    assert checks["raw/call:rows_equal_records_read"] is True  # kept, as a dead letter
    assert not result.success and not published(dagster_settings).exists()


def test_offsets_lost_to_retention_fail_the_rows_check(
        dagster_settings: Settings, traffic: Traffic, tmp_path: Path) -> None:
    bodies_file, _ = simulate(tmp_path, 20, 51)
    bodies = read_bodies(bodies_file)
    traffic.send(bodies[:100])
    instance = DagsterInstance.ephemeral()
    assert refresh(dagster_settings, instance).success
    traffic.send(bodies[100:])
    topic = topic_for("call", dagster_settings.topic_prefix)

    async def delete_all() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=dagster_settings.kafka.bootstrap)
        await admin.start()
        try:
            await admin.delete_records({TopicPartition(topic, p): RecordsToDelete(-1)
                                        for p in range(3)})
        finally:
            await admin.close()

    asyncio.run(delete_all())
    result = refresh(dagster_settings, instance)
    checks = check_results(result)
    assert checks["raw/call:rows_equal_records_read"] is False
    evaluation = next(e for e in result.get_asset_check_evaluations()
                      if e.asset_key == AssetKey(["raw", "call"]))
    assert int(evaluation.metadata["offsets_lost_to_retention"].value) > 0  # type: ignore[arg-type]
    assert not result.success


def test_sensor_asks_for_a_run_only_when_messages_wait(
        dagster_settings: Settings, traffic: Traffic, tmp_path: Path) -> None:
    sensor = defs.resolve_sensor_def("kafka_offsets_sensor")
    rwi = RwiResource.from_settings(dagster_settings)
    instance = DagsterInstance.ephemeral()

    def tick(cursor: str | None = None) -> SensorResult:
        context = build_sensor_context(instance=instance, resources={"rwi": rwi},
                                       cursor=cursor, definitions=defs)
        result = sensor(context)
        assert isinstance(result, SensorResult)
        return result

    idle = tick()
    assert not idle.run_requests and "are complete" in str(idle.skip_reason)
    assert [getattr(e, "check_name", None) for e in idle.asset_events] == ["freshness"]

    bodies_file, _ = simulate(tmp_path, 5, 61)
    sent = traffic.send(read_bodies(bodies_file))
    waiting = tick(idle.cursor)
    assert waiting.run_requests and isinstance(waiting.run_requests[0], RunRequest)
    assert waiting.run_requests[0].tags["rwi/pending_messages"] == str(sent)
    assert not waiting.asset_events  # freshness unchanged (nothing old pending): not re-sent

    running = DagsterRun(job_name=REFRESH_JOB, run_id="0" * 36,
                         status=DagsterRunStatus.STARTED)
    instance.add_run(running)
    busy = tick(waiting.cursor)
    assert not busy.run_requests and "is started" in str(busy.skip_reason)
    instance.delete_run(running.run_id)

    assert refresh(dagster_settings, instance).success
    done = tick(waiting.cursor)
    assert not done.run_requests and "are complete" in str(done.skip_reason)

    published(dagster_settings).unlink()  # the lake is ahead of what readers see
    behind = tick(done.cursor)
    assert behind.run_requests
    assert "messages in the lake not yet published" in behind.run_requests[0].tags["rwi/reason"]
