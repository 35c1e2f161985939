"""The Parquet lake without Kafka: file naming, atomic writes, the manifest, garbage, merge.

The helpers at the top build real Kafka-shaped batches from RWI bodies (through the ingest
path) and compact them offline; the warehouse tests use them too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import avro
from pipelines.arrow_schema import DEAD_LETTER_TABLE, lake_tables, table_spec
from pipelines.batch_tables import BatchConverter
from pipelines.compact import _write_batch, current_specs
from pipelines.encode import OutgoingMessage
from pipelines.ingest import BodyConverter
from pipelines.kafka_read import MessageBatch
from pipelines.lake import (
    Lake,
    LakeBusyError,
    LakeFile,
    Manifest,
    OffsetRange,
    ParquetOptions,
    batch_file_name,
    write_atomic,
    write_parquet,
)
from pipelines.merge import MergeOptions, merge_lake

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 8, 22, 23, 59, 50, tzinfo=UTC)
TYPES = ("call_ringing", "call_answered", "call_hangup", "media_hold_started", "queue_joined",
         "ivr_node_entered", "record_started")


def body(i: int, *, event_type: str | None = None, when: datetime | None = None) -> bytes:
    """A current-dialect webhook body; events straddle midnight so batches span two days."""
    event_type = event_type or TYPES[i % len(TYPES)]
    call = f"c{i // 3}"
    when = when or T0 + timedelta(seconds=i % 20, microseconds=i)
    event = {"event_type": event_type, "call_id": call, "caller": f"sip:{1000 + i % 7}@pbx",
             "callee": "sip:200@pbx", "direction": "inbound", "session_id": f"s{i // 6}",
             "sip_status": 200 + i % 3, "routing_path": ["ivr", "queue"][: i % 3],
             "sip_headers": {"X-Seq": str(i)} if i % 2 else None, "unknown": i}
    return json.dumps({"rwi": "1.0", "timestamp": when.isoformat(), "call_id": call,
                       "event_type": event_type, "event": event}).encode()


def messages(bodies: Iterable[bytes], prefix: str = "rwi") -> list[OutgoingMessage]:
    converter = BodyConverter("pbx-test", prefix)
    out: list[OutgoingMessage] = []
    for raw in bodies:
        out.extend(converter.convert(raw, source="webhook", received_at=T0).messages)
    return out


def batches(msgs: list[OutgoingMessage], *, partitions: int = 2, size: int = 50,
            start: dict[tuple[str, int], int] | None = None) -> list[MessageBatch]:
    """Messages laid out as Kafka would (partition by key, consecutive offsets), batched."""
    logs: dict[tuple[str, int], list[OutgoingMessage]] = {}
    for m in msgs:
        logs.setdefault((m.topic, zlib.crc32(m.key) % partitions), []).append(m)
    out = []
    for (topic, partition), log in sorted(logs.items()):
        first = (start or {}).get((topic, partition), 0)
        for k in range(0, len(log), size):
            chunk = log[k:k + size]
            offsets = list(range(first + k, first + k + len(chunk)))
            out.append(MessageBatch(topic, partition, offsets[0], offsets[-1], offsets,
                                    [int(T0.timestamp() * 1000) + o for o in offsets],
                                    [m.value for m in chunk]))
    return out


def compact_offline(lake: Lake, todo: list[MessageBatch],
                    schema_dir: Path = avro.SCHEMA_DIR) -> Manifest:
    """What a compaction run does per batch, minus Kafka: write files, then commit."""
    specs = current_specs(schema_dir)
    schemas = [s.schema for s in specs.values()]
    lake.archive_schemas(schemas)
    converter = BatchConverter(avro.SchemaStore([*lake.archived_schemas(), *schemas]),
                               schema_dir)
    with lake.lock():
        manifest = lake.read_manifest()
        lake.collect_garbage(manifest)
        for batch in todo:
            files = _write_batch(lake, converter, batch, ParquetOptions(row_group_rows=16))
            manifest = manifest.with_batch(files, batch.topic, batch.partition, batch.last + 1,
                                           T0)
            lake.commit(manifest)
    return manifest


def lake_rows(lake: Lake, table: str) -> list[dict]:
    manifest = lake.read_manifest()
    rows = []
    for f in manifest.table_files(table):
        rows.extend(pq.read_table(lake.path(f.path)).to_pylist())
    return sorted(rows, key=lambda r: (r["_topic"], r["_partition"], r["_offset"]))


# -- tests ----------------------------------------------------------------------------------


def test_files_are_named_by_topic_partition_and_offset_range(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    todo = batches(messages(body(i) for i in range(60)), partitions=1, size=25)
    manifest = compact_offline(lake, todo)
    call = next(b for b in todo if b.topic == "rwi.call.v1")
    name = batch_file_name("rwi.call.v1", 0, call.first, call.last)
    assert name == f"rwi.call.v1+0+{call.first}-{call.last}.parquet"
    days = sorted(f.date for f in manifest.files.values() if f.path.endswith(name))
    # The batch straddles midnight: one file per day, both named after the whole range.
    assert days == ["2026-08-22", "2026-08-23"]
    for f in manifest.files.values():
        assert (lake.root / f.path).is_file()
        assert f.path.startswith(f"{f.table}/event_date={f.date}/")
        assert pq.read_metadata(lake.root / f.path).num_rows == f.rows
        assert pq.read_schema(lake.root / f.path).field("event_time").type.unit == "us"


def test_offsets_are_committed_with_the_files(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    msgs = messages(body(i) for i in range(80))
    todo = batches(msgs, partitions=2, size=10)
    manifest = compact_offline(lake, todo)
    expected: dict[tuple[str, int], int] = {}
    for b in todo:
        expected[(b.topic, b.partition)] = b.last + 1
    assert dict(manifest.offsets) == expected
    assert dict(Lake(lake.root).read_manifest().offsets) == expected
    assert sum(f.rows for f in manifest.files.values()) == len(msgs)
    doc = json.loads(lake.manifest_path.read_text())
    assert doc["offsets"]["rwi.call.v1"] == {str(p): n for (t, p), n in expected.items()
                                            if t == "rwi.call.v1"}


def test_rerunning_a_batch_rewrites_the_same_files(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    todo = batches(messages(body(i) for i in range(30)), partitions=1, size=100)
    first = compact_offline(lake, todo)
    again = compact_offline(Lake(tmp_path / "lake"), todo)
    assert set(first.files) == set(again.files)
    assert lake_rows(lake, "call") == lake_rows(Lake(tmp_path / "lake"), "call")


def test_a_crash_before_the_commit_leaves_no_visible_file(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    todo = batches(messages(body(i) for i in range(40)), partitions=1, size=100)
    compact_offline(lake, todo[:1])
    before = lake.read_manifest()

    class Crash(Exception):
        pass

    def crash(point: str) -> None:
        if point == "manifest_written":
            raise Crash

    crashing = Lake(tmp_path / "lake", hook=crash)
    with pytest.raises(Crash):
        compact_offline(crashing, todo[1:2])
    assert lake.read_manifest() == before
    assert not list(lake.root.glob(".*.tmp"))
    # The files of the uncommitted batch exist but are not part of the lake...
    listed = {lake.root / p for p in before.files}
    strays = [p for p in lake.root.rglob("*.parquet") if p not in listed]
    assert strays
    # ...and the next writer deletes them before it starts.
    assert sorted(lake.collect_garbage(lake.read_manifest())) == sorted(
        str(p.relative_to(lake.root)) for p in strays)


def test_a_killed_parquet_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "call" / "event_date=2026-08-22" / "t+0+0-99.parquet"
    target.parent.mkdir(parents=True)
    code = f"""
import os, signal
import pyarrow as pa
from pathlib import Path
from pipelines.lake import ParquetOptions, write_parquet
groups = []
def hook(point):
    if point == "row_group_written":
        groups.append(point)
        if len(groups) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
table = pa.table({{"x": list(range(100))}})
write_parquet(Path({str(target)!r}), table, ParquetOptions(row_group_rows=10), hook)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60)
    assert proc.returncode == -9
    assert not target.exists()
    leftovers = list(target.parent.iterdir())
    assert [p.name.startswith(".") and p.name.endswith(".tmp") for p in leftovers] == [True]
    assert not list(target.parent.glob("*.parquet"))  # invisible to readers globbing the lake
    lake = Lake(tmp_path)
    assert lake.collect_garbage(Manifest()) == [f"call/event_date=2026-08-22/{leftovers[0].name}"]


def test_write_atomic_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomic(path, b"old")

    def fail(point: str) -> None:
        raise RuntimeError(point)

    with pytest.raises(RuntimeError, match="before_rename"):
        write_atomic(path, b"new", fail, "before_rename")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"


def test_parquet_files_are_zstd_and_round_trip(tmp_path: Path) -> None:
    table = pa.table({"x": pa.array([1, 2, 3], pa.int64()), "s": ["a", None, "c"]})
    size = write_parquet(tmp_path / "f.parquet", table, ParquetOptions())
    assert size == (tmp_path / "f.parquet").stat().st_size
    meta = pq.read_metadata(tmp_path / "f.parquet")
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_table(tmp_path / "f.parquet").equals(table)


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    with lake.lock(), pytest.raises(LakeBusyError) as busy, Lake(tmp_path / "lake").lock():
        pass
    assert busy.value.retriable
    with lake.lock():  # released
        pass


def test_manifest_round_trips(tmp_path: Path) -> None:
    f = LakeFile("call/event_date=2026-08-22/t+0+0-9.parquet", "call", "2026-08-22", 7, 100,
                 (OffsetRange("t", 0, 0, 9),), {"ab": 7})
    m = Manifest().with_batch([f], "t", 0, 10, T0)
    assert Manifest.from_json(json.loads(json.dumps(m.to_json()))) == m
    assert m.generation == 1 and m.offsets == {("t", 0): 10}
    assert f.overlaps("t", 0, 9, 20) and not f.overlaps("t", 0, 10, 20)
    assert not f.overlaps("t", 1, 0, 20)


def test_undecodable_values_become_dead_letters(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    good = messages(body(i, event_type="call_ringing") for i in range(5))
    values = [m.value for m in good]
    values[1] = b"not avro at all"
    values[3] = values[3][:-4]  # truncated body
    batch = MessageBatch("rwi.call.v1", 0, 0, 4, list(range(5)), [1_700_000_000_000] * 5,
                         values)
    manifest = compact_offline(lake, [batch])
    assert manifest.rows("call") == 3
    dead = lake_rows(lake, DEAD_LETTER_TABLE)
    assert [(d["_offset"], d["reason"]) for d in dead] == [(1, "no_framing"),
                                                           (3, "undecodable")]
    assert dead[0]["raw"] == b"not avro at all"
    assert dead[0]["_topic"] == "rwi.call.v1"
    assert manifest.offsets[("rwi.call.v1", 0)] == 5  # nothing is left behind


def test_merge_rewrites_small_files_sorted_and_keeps_every_row(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    todo = batches(messages(body(i) for i in range(120)), partitions=2, size=7)
    manifest = compact_offline(lake, todo)
    before = {t: lake_rows(lake, t) for t in lake_tables()}
    specs = current_specs()
    with lake.lock():
        merged, results = merge_lake(lake, manifest, specs, MergeOptions(), lambda: T0)
    assert results
    assert len(merged.files) < len(manifest.files)
    for t in lake_tables():
        assert lake_rows(lake, t) == before[t]
        assert merged.rows(t) == manifest.rows(t)
    assert merged.offsets == manifest.offsets
    on_disk = {str(p.relative_to(lake.root)) for p in lake.root.rglob("*.parquet")}
    assert on_disk == set(merged.files)
    spec = table_spec("call")
    for f in merged.files.values():
        if f.path.rsplit("/", 1)[1].startswith("merged-") and f.table == "call":
            data = pq.read_table(lake.path(f.path))
            keys = list(zip(data["event_time"].to_pylist(), data["event_id"].to_pylist(),
                            strict=True))
            assert keys == sorted(keys)
            assert data.schema.names == spec.file_schema.names
            ranges = {(r.topic, r.partition) for r in f.ranges}
            assert ranges == {("rwi.call.v1", 0), ("rwi.call.v1", 1)}


def test_an_interrupted_merge_changes_nothing(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    manifest = compact_offline(lake, batches(messages(body(i) for i in range(60)), size=5))
    before = lake_rows(lake, "call")

    def crash(point: str) -> None:
        if point == "manifest_written":
            raise KeyboardInterrupt

    crashing = Lake(lake.root, hook=crash)
    with crashing.lock(), pytest.raises(KeyboardInterrupt):
        merge_lake(crashing, manifest, current_specs(), MergeOptions(), lambda: T0)
    assert lake.read_manifest() == manifest
    assert lake_rows(lake, "call") == before
    removed = lake.collect_garbage(lake.read_manifest())
    assert removed and all("/merged-" in r for r in removed)
    assert {str(p.relative_to(lake.root)) for p in lake.root.rglob("*.parquet")} == set(
        manifest.files)


def test_schemas_are_archived_by_fingerprint(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    schemas = [spec.schema for spec in current_specs().values()]
    lake.archive_schemas(schemas)
    archived = {s.fingerprint: s for s in lake.archived_schemas()}
    assert set(archived) == {s.fingerprint for s in schemas}
    for s in schemas:
        assert archived[s.fingerprint].canonical == s.canonical
        assert archived[s.fingerprint].name == s.name
    assert all(not p.name.startswith(".") for p in os.scandir(lake.schema_dir))
