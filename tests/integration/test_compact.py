"""Compaction against the real broker: counts, idempotence, schema change, BI readers, CLI."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pytest
from aiokafka import AIOKafkaProducer

from pipelines import avro
from pipelines.arrow_schema import lake_tables
from pipelines.catalog import CATEGORY_SCHEMA, all_topics, topic_for
from pipelines.compact import CompactSettings, run_compact, run_merge
from pipelines.encode import OutgoingMessage
from pipelines.events import CanonicalEvent
from pipelines.ingest import BodyConverter
from pipelines.lake import Lake
from pipelines.settings import Settings, load_settings
from pipelines.topics import ensure_topics
from pipelines.warehouse import WarehousePaths
from tests.unit.test_lake import T0, body, messages

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[2]


def settings_for(bootstrap: str, prefix: str, data_dir: Path) -> Settings:
    return load_settings(environ={"KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                                  "RWI_TOPIC_PREFIX": prefix, "RWI_DATA_DIR": str(data_dir)})


def produce(bootstrap: str, prefix: str, msgs: Iterable[OutgoingMessage],
            partitions: int = 3) -> None:
    """Create the prefix's topics (once) and produce ``msgs`` with keys as the ingest does."""

    async def run() -> None:
        await ensure_topics(bootstrap, all_topics(prefix), partitions, 1, 3_600_000)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                    enable_idempotence=True, linger_ms=5)
        await producer.start()
        try:
            futures = [await producer.send(m.topic, m.value, key=m.key, headers=m.headers)
                       for m in msgs]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(run())


def query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def lake_snapshot(data_dir: Path) -> dict[str, tuple[int, int, int]]:
    """Every file of the lake with inode, size and mtime (a rewrite changes them)."""
    root = data_dir / "lake"
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and p.name != "_lock"}


def test_rows_match_messages_and_a_second_run_changes_nothing(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    raws = [body(i) for i in range(300)]
    msgs = messages(raws, topic_prefix) + messages(raws[:40], topic_prefix)  # redeliveries
    msgs += messages([b"{not json", b"[]"], topic_prefix)  # two dead letters
    produce(kafka_bootstrap, topic_prefix, msgs)
    per_topic: dict[str, int] = {}
    for m in msgs:
        per_topic[m.topic] = per_topic.get(m.topic, 0) + 1
    events = {e.event_id for raw in raws for e in _events(raw)}
    settings = settings_for(kafka_bootstrap, topic_prefix, tmp_path)

    first = run_compact(settings, CompactSettings(max_batch_messages=37))
    assert first.status == "ok" and first.messages == len(msgs) == first.rows
    db = WarehousePaths.under(tmp_path).published
    for table in lake_tables():
        topic = (topic_for(table, topic_prefix) if table != "deadletter"
                 else f"{topic_prefix}.deadletter.v1")
        [(rows,)] = query(db, f"SELECT count(*) FROM raw.{table}")
        assert rows == per_topic.get(topic, 0), table
    distinct = sum(query(db, f"SELECT count(DISTINCT event_id) FROM raw.{t}")[0][0]
                   for t in lake_tables() if t != "deadletter")
    staged = sum(query(db, f"SELECT count(*) FROM staging.{t}")[0][0]
                 for t in lake_tables() if t != "deadletter")
    assert distinct == staged == len(events)
    reasons = query(db, "SELECT reason FROM raw.deadletter ORDER BY reason")
    assert reasons == [("empty_array",), ("invalid_json",)]

    before = lake_snapshot(tmp_path)
    second = run_compact(settings, CompactSettings(max_batch_messages=37))
    assert second.status == "ok" and second.messages == 0 and second.files == 0
    assert sum(second.warehouse_rows.values()) == 0
    assert lake_snapshot(tmp_path) == before
    runs = query(db, 'SELECT status, messages, "rows" FROM meta.runs ORDER BY started_at')
    assert runs == [("ok", len(msgs), len(msgs)), ("ok", 0, 0)]
    offsets = query(db, "SELECT sum(next_offset), sum(end_offset) FROM meta.offsets")
    assert offsets == [(len(msgs), len(msgs))]


def _events(raw: bytes) -> list[CanonicalEvent]:
    return BodyConverter("pbx-test").convert(raw, source="webhook", received_at=T0).events


def test_an_additive_schema_change_lands_without_a_manual_step(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    settings = settings_for(kafka_bootstrap, topic_prefix, tmp_path / "data")
    produce(kafka_bootstrap, topic_prefix, messages((body(i) for i in range(30)), topic_prefix))
    run_compact(settings)
    # Old-schema messages still waiting in the topic when the schema changes...
    produce(kafka_bootstrap, topic_prefix,
            messages((body(i) for i in range(30, 45)), topic_prefix))
    schemas = tmp_path / "schemas"
    shutil.copytree(avro.SCHEMA_DIR, schemas)
    name = CATEGORY_SCHEMA["call"]
    definition = avro.raw_definition(name)
    definition["fields"].insert(-1, {"name": "queue_name", "type": ["null", "string"],
                                     "default": None, "doc": "added later"})
    (schemas / f"{name}.avsc").write_text(json.dumps(definition), encoding="utf-8")
    new = avro.load(name, schemas)
    # ...and new-schema messages after it.
    calls = [e for i in range(45, 60) for e in _events(body(i)) if e.category == "call"]
    produce(kafka_bootstrap, topic_prefix, [
        OutgoingMessage(topic_for("call", topic_prefix), e.key.encode(),
                        avro.encode(new, {**e.to_record(), "queue_name": "sales"}), [])
        for e in calls])
    summary = run_compact(settings, schema_dir=schemas)
    assert summary.status == "ok"
    assert summary.topics() and not any(t["dead_letters"] for t in summary.topics())
    db = WarehousePaths.under(tmp_path / "data").published
    by_value = dict(query(db, "SELECT coalesce(queue_name, '<null>'), count(*) "
                              "FROM raw.call GROUP BY 1"))
    [(total,)] = query(db, "SELECT count(*) FROM raw.call")
    assert by_value["sales"] == len(calls)
    assert by_value["<null>"] == total - len(calls) > 0
    fingerprints = {fp for (fp,) in query(
        db, "SELECT fingerprint FROM meta.schema_history WHERE table_name = 'call'")}
    assert fingerprints == {avro.load(name).fingerprint_hex, new.fingerprint_hex}


_READER = """
import json, sys, time, duckdb
db, stop = sys.argv[1], sys.argv[2]
held = duckdb.connect(db, read_only=True)
q = "SELECT count(*) FROM raw.call"
seen = set()
import os
while not os.path.exists(stop):
    seen.add(("held", held.execute(q).fetchall()[0][0]))
    time.sleep(0.01)
held.close()
fresh = duckdb.connect(db, read_only=True)
seen.add(("fresh", fresh.execute(q).fetchall()[0][0]))
print(json.dumps(sorted(seen)), flush=True)
"""

_REOPENER = """
import json, sys, os, duckdb
db, stop = sys.argv[1], sys.argv[2]
seen = set()
while not os.path.exists(stop):
    con = duckdb.connect(db, read_only=True)
    seen.add(con.execute("SELECT count(*) FROM raw.call").fetchall()[0][0])
    con.close()
print(json.dumps(sorted(seen)), flush=True)
"""


def test_a_bi_reader_never_blocks_a_run_and_never_sees_half_a_run(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    settings = settings_for(kafka_bootstrap, topic_prefix, tmp_path)
    produce(kafka_bootstrap, topic_prefix, messages((body(i) for i in range(50)), topic_prefix))
    run_compact(settings)
    db = WarehousePaths.under(tmp_path).published
    [(old,)] = query(db, "SELECT count(*) FROM raw.call")
    produce(kafka_bootstrap, topic_prefix,
            messages((body(i) for i in range(50, 400)), topic_prefix))
    stop = tmp_path / "stop"
    readers = [subprocess.Popen([sys.executable, "-c", code, str(db), str(stop)],
                                stdout=subprocess.PIPE, text=True, cwd=REPO)
               for code in (_READER, _REOPENER)]
    try:
        summary = run_compact(settings, CompactSettings(max_batch_messages=20))
        assert summary.status == "ok" and summary.published
        [(new,)] = query(db, "SELECT count(*) FROM raw.call")
        assert new > old
        stop.touch()
        outputs = [r.communicate(timeout=60)[0] for r in readers]
    finally:
        for r in readers:
            r.kill()
    assert all(r.returncode == 0 for r in readers)
    held_seen = {(kind, n) for kind, n in json.loads(outputs[0])}
    assert ("held", old) in held_seen and ("fresh", new) in held_seen
    assert {n for kind, n in held_seen if kind == "held"} == {old}
    assert set(json.loads(outputs[1])) <= {old, new}


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connectors.cli.main", *args], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=300)


def test_cli_compact_and_merge(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "RWI_TOPIC_PREFIX": topic_prefix,
           "RWI_DATA_DIR": str(tmp_path)}
    total = 0
    for start in (0, 40, 80):  # three runs: three small files per table and day
        batch = messages((body(i) for i in range(start, start + 40)), topic_prefix)
        produce(kafka_bootstrap, topic_prefix, batch)
        total += len(batch)
        run = _cli(["compact", "--json"], env)
        assert run.returncode == 0, run.stderr
        doc = json.loads(run.stdout)
        assert doc["status"] == "ok" and doc["messages"] == len(batch)
    table = _cli(["compact"], env)
    assert table.returncode == 0
    assert f"{topic_prefix}.call.v1" in table.stdout and "published" in table.stdout
    files_before = len(Lake(tmp_path / "lake").read_manifest().files)
    merge = _cli(["compact", "--merge", "--json"], env)
    assert merge.returncode == 0, merge.stderr
    merged = json.loads(merge.stdout)
    assert merged["kind"] == "merge" and merged["merges"]
    manifest = Lake(tmp_path / "lake").read_manifest()
    assert len(manifest.files) < files_before
    assert manifest.rows() == total
    db = WarehousePaths.under(tmp_path).published
    assert sum(query(db, f"SELECT count(*) FROM raw.{t}")[0][0] for t in lake_tables()) == total
    assert query(db, "SELECT kind FROM meta.runs ORDER BY started_at DESC LIMIT 1") == [
        ("merge",)]
    assert "nothing to merge" in _cli(["compact", "--merge"], env).stdout


def test_cli_exit_codes(topic_prefix: str, tmp_path: Path) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "RWI_TOPIC_PREFIX": topic_prefix,
           "RWI_DATA_DIR": str(tmp_path)}
    down = _cli(["compact"], env)
    assert down.returncode == 3, down.stderr
    assert "rwi-etl: error:" in down.stderr
    with Lake(tmp_path / "lake").lock():
        busy = _cli(["compact", "--merge"], env)
    assert busy.returncode == 4 and "another" in busy.stderr


def test_merge_keeps_the_warehouse_unchanged(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    settings = settings_for(kafka_bootstrap, topic_prefix, tmp_path)
    for start in range(0, 90, 30):
        produce(kafka_bootstrap, topic_prefix,
                messages((body(i) for i in range(start, start + 30)), topic_prefix))
        run_compact(settings, CompactSettings(max_batch_messages=11))
    db = WarehousePaths.under(tmp_path).published
    before = query(db, "SELECT * EXCLUDE (event_date) FROM raw.call ORDER BY _partition, _offset")
    summary = run_merge(settings)
    assert summary.merges and summary.status == "ok"
    assert query(db, "SELECT * EXCLUDE (event_date) FROM raw.call "
                     "ORDER BY _partition, _offset") == before
    again = run_compact(settings)
    assert again.messages == 0 and sum(again.warehouse_rows.values()) == 0
