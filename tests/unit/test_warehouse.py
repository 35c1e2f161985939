"""DuckDB over the lake: raw tables by offsets, dedup in staging, meta tables, publishing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from pipelines import avro, warehouse
from pipelines.arrow_schema import lake_tables
from pipelines.catalog import CATEGORY_SCHEMA
from pipelines.compact import current_specs
from pipelines.events import CanonicalEvent
from pipelines.ingest import BodyConverter
from pipelines.kafka_read import MessageBatch
from pipelines.lake import Lake, Manifest
from pipelines.warehouse import WarehousePaths, open_work, publish, sync_raw
from tests.unit.test_lake import T0, batches, body, compact_offline, messages

REPO = Path(__file__).resolve().parents[2]


def load(data_dir: Path, manifest: Manifest, schema_dir: Path = avro.SCHEMA_DIR) -> dict:
    specs = current_specs(schema_dir)
    paths = WarehousePaths.under(data_dir)
    with open_work(paths) as con:
        warehouse.ensure_schema(con, specs)
        warehouse.record_schemas(con, [s.schema for s in specs.values()])
        added = sync_raw(con, data_dir / "lake", manifest, specs, T0)
    publish(paths)
    return added


def query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_raw_keeps_every_delivery_staging_one_per_event(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    raws = [body(i) for i in range(40)]
    msgs = messages(raws) + messages(raws[:10])  # ten events delivered twice
    manifest = compact_offline(lake, batches(msgs, partitions=2, size=9))
    added = load(tmp_path, manifest)
    db = WarehousePaths.under(tmp_path).published
    per_table = {t: manifest.rows(t) for t in lake_tables()}
    assert added == per_table
    assert sum(per_table.values()) == len(msgs)
    total_raw = sum(query(db, f"SELECT count(*) FROM raw.{t}")[0][0] for t in lake_tables())
    assert total_raw == len(msgs)
    [(rows, distinct)] = query(db, "SELECT count(*), count(DISTINCT event_id) FROM raw.call")
    assert rows > distinct
    staged = query(db, "SELECT count(*), count(DISTINCT event_id), max(_deliveries) "
                       "FROM staging.call")
    assert staged == [(distinct, distinct, 2)]
    dupes = query(db, "SELECT event_id, list(_offset ORDER BY _offset), count(*) FROM raw.call "
                      "GROUP BY event_id HAVING count(*) > 1")
    assert dupes and all(n == 2 and len(set(offsets)) == 2 for _, offsets, n in dupes)
    assert query(db, "SELECT count(*) FROM raw.call WHERE event_date IS NULL "
                     "OR _topic IS NULL OR _offset IS NULL OR _kafka_timestamp IS NULL") == [(0,)]


def test_loading_is_keyed_by_offsets_and_idempotent(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    todo = batches(messages(body(i) for i in range(60)), partitions=2, size=8)
    half = compact_offline(lake, todo[: len(todo) // 2])
    load(tmp_path, half)
    full = compact_offline(lake, todo[len(todo) // 2:])
    added = load(tmp_path, full)
    assert sum(added.values()) == full.rows() - half.rows()
    assert sum(load(tmp_path, full).values()) == 0
    db = WarehousePaths.under(tmp_path).published
    offsets = query(db, 'SELECT topic, "partition", next_offset FROM meta.offsets')
    assert {(t, p): n for t, p, n in offsets} == dict(full.offsets)
    [(files,)] = query(db, "SELECT count(*) FROM meta.lake_files")
    assert files == len(full.files)
    [(total,)] = query(db, "SELECT count(*) FROM raw.call")
    assert total == full.rows("call")


def test_a_rebuilt_lake_behind_the_database_is_followed(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    todo = batches(messages(body(i) for i in range(30)), partitions=1, size=10)
    full = compact_offline(lake, todo)
    load(tmp_path, full)
    shutil.rmtree(tmp_path / "lake")
    partial = compact_offline(Lake(tmp_path / "lake"), todo[:1])
    load(tmp_path, partial)
    db = WarehousePaths.under(tmp_path).published
    total = sum(query(db, f"SELECT count(*) FROM raw.{t}")[0][0] for t in lake_tables())
    assert total == partial.rows()


def test_an_additive_schema_change_adds_a_nullable_column(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    old = compact_offline(lake, batches(messages(body(i) for i in range(20)), partitions=1))
    load(tmp_path, old)
    schemas = tmp_path / "schemas"
    shutil.copytree(avro.SCHEMA_DIR, schemas)
    name = CATEGORY_SCHEMA["call"]
    definition = avro.raw_definition(name)
    definition["fields"].insert(-1, {"name": "queue_name", "type": ["null", "string"],
                                     "default": None})
    (schemas / f"{name}.avsc").write_text(json.dumps(definition), encoding="utf-8")
    new_schema = avro.load(name, schemas)
    events = [e for e in _events(range(100, 110)) if e.category == "call"]
    values = [avro.encode(new_schema, {**e.to_record(), "queue_name": "sales"}) for e in events]
    first = old.offsets[("rwi.call.v1", 0)]
    offsets = list(range(first, first + len(values)))
    batch = [MessageBatch("rwi.call.v1", 0, offsets[0], offsets[-1], offsets,
                          [1_787_000_000_000] * len(values), values)]
    new = compact_offline(lake, batch, schemas)
    load(tmp_path, new, schemas)
    db = WarehousePaths.under(tmp_path).published
    rows = query(db, "SELECT queue_name, count(*) FROM raw.call GROUP BY 1 ORDER BY 1")
    assert rows == [("sales", len(values)), (None, old.rows("call"))]
    columns = [r[0] for r in query(db, "DESCRIBE staging.call")]
    assert "queue_name" in columns
    history = query(db, "SELECT fingerprint, schema_name, \"rows\" FROM meta.schema_history "
                        "WHERE table_name = 'call' ORDER BY \"rows\"")
    assert [(fp, n) for fp, _, n in history] == [
        (new_schema.fingerprint_hex, len(values)),
        (avro.load(name).fingerprint_hex, old.rows("call"))]
    assert {s for _, s, _ in history} == {name}


def _events(indices: range) -> list[CanonicalEvent]:
    converter = BodyConverter("pbx-test")
    return [e for i in indices
            for e in converter.convert(body(i), source="webhook", received_at=T0).events]


_READER = """
import sys, duckdb
db = sys.argv[1]
held = duckdb.connect(db, read_only=True)
count = lambda con: con.execute("SELECT count(*) FROM raw.call").fetchall()[0][0]
print(count(held), flush=True)
sys.stdin.readline()
still = count(held)
held.close()  # DuckDB shares one instance per file in a process: reopen to move on
fresh = duckdb.connect(db, read_only=True)
print(still, count(fresh), flush=True)
"""


def test_publishing_never_disturbs_a_reader(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    todo = batches(messages(body(i) for i in range(50)), partitions=1, size=10)
    first = compact_offline(lake, todo[:1])
    load(tmp_path, first)
    paths = WarehousePaths.under(tmp_path)
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(paths.published)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert reader.stdout is not None and reader.stdin is not None
        before = int(reader.stdout.readline())
        assert before == first.rows("call")
        # A run (writing the working file, then publishing) while the reader holds the file.
        full = compact_offline(lake, todo[1:])
        load(tmp_path, full)
        reader.stdin.write("\n")
        reader.stdin.flush()
        held, fresh = map(int, reader.stdout.readline().split())
        assert reader.wait(timeout=60) == 0
    finally:
        reader.kill()
    assert held == before  # the open connection keeps its consistent snapshot
    assert fresh == full.rows("call")  # a new connection sees the new state, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake", "rwi.duckdb", "warehouse"]


def test_publish_refuses_a_database_with_a_pending_wal(tmp_path: Path) -> None:
    paths = WarehousePaths.under(tmp_path)
    paths.work.parent.mkdir(parents=True)
    paths.work.write_bytes(b"")
    paths.work.with_name(paths.work.name + ".wal").write_bytes(b"x")
    with pytest.raises(warehouse.WarehouseError, match="WAL"):
        publish(paths)
    assert not paths.published.exists()


def test_runs_are_recorded(tmp_path: Path) -> None:
    paths = WarehousePaths.under(tmp_path)
    with open_work(paths) as con:
        warehouse.ensure_schema(con, current_specs())
        run = warehouse.RunRecord("r1", "compact", T0, T0.replace(second=59), "ok", 5, 5, 1,
                                  {"topics": []})
        warehouse.record_run(con, run)
        warehouse.record_run(con, replace(run, run_id="r2", status="failed", error="boom"))
        rows = con.execute("SELECT run_id, status, duration_s, error FROM meta.runs "
                           "ORDER BY run_id").fetchall()
    assert rows == [("r1", "ok", 9.0, None), ("r2", "failed", 9.0, "boom")]


def test_staging_prefers_the_copy_that_carries_the_pbx_time(tmp_path: Path) -> None:
    """A WebSocket frame carries no timestamp (stamped on receipt) and may arrive before the
    webhook body of the same event; the view keeps the body, whose time is the PBX's."""
    from datetime import timedelta

    event = {"event_type": "call_ringing", "call_id": "c-ws", "caller": "sip:1@pbx",
             "callee": "sip:2@pbx"}
    pbx_time = T0 - timedelta(seconds=30)
    frame = json.dumps(event).encode()
    webhook = json.dumps({"timestamp": pbx_time.isoformat(), "call_id": "c-ws",
                          "event_type": "call_ringing", "event": event}).encode()
    converter = BodyConverter("pbx-test", "rwi")
    first = converter.convert(frame, source="ws", received_at=T0)
    later = converter.convert(webhook, source="webhook", received_at=T0 + timedelta(seconds=1))
    assert first.events[0].event_id == later.events[0].event_id
    lake = Lake(tmp_path / "lake")
    manifest = compact_offline(lake, batches(first.messages + later.messages))
    load(tmp_path, manifest)
    db = WarehousePaths.under(tmp_path).published
    assert query(db, "SELECT source, event_time, _deliveries FROM staging.call") == [
        ("webhook", pbx_time, 2)]
