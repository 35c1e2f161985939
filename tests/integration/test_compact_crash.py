"""kill -9 of the compactor (and of a merge) at many points, then a normal run: the same rows.

A child process runs one compaction or merge with a hook that SIGKILLs itself at the n-th
time it reaches a named point (mid-file, after a file, mid-commit, after the commit, in the
warehouse, mid-publish...), or is killed by a random timer. The runs share one lake, each
starting from whatever the previous one left. At the end a normal run must produce exactly
the lake and the database an uninterrupted run produces.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines.arrow_schema import lake_tables
from pipelines.compact import CompactSettings, run_compact, run_merge
from pipelines.lake import Lake
from pipelines.warehouse import WarehousePaths
from tests.integration.test_compact import produce, settings_for
from tests.unit.test_lake import body, messages

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.chaos]
REPO = Path(__file__).resolve().parents[2]
OPTIONS = {"max_batch_messages": 7, "row_group_rows": 3, "target_file_rows": 40}

_CHILD = """
import json, os, signal, sys
from pipelines.compact import CompactSettings, run_compact, run_merge
from pipelines.settings import load_settings
cfg = json.loads(sys.argv[1])
seen = 0
def hook(point):
    global seen
    if point == cfg["point"]:
        seen += 1
        if seen == cfg["nth"]:
            os.kill(os.getpid(), signal.SIGKILL)
settings = load_settings(environ=cfg["env"])
run = run_merge if cfg["merge"] else run_compact
run(settings, CompactSettings(**cfg["options"]), hook=hook)
"""

# (point, n): die the n-th time the run reaches that point.
COMPACT_POINTS = [("batch_read", 2), ("row_group_written", 1), ("row_group_written", 5),
                  ("file_synced", 2), ("file_written", 1), ("file_written", 3),
                  ("manifest_written", 1), ("manifest_written", 4), ("committed", 1),
                  ("committed", 2), ("committed", 6), ("warehouse_synced", 1),
                  ("publish_copied", 1), ("published", 1), ("file_written", 9),
                  ("manifest_written", 12), ("row_group_written", 30), ("batch_read", 7)]
MERGE_POINTS = [("row_group_written", 2), ("merge_file_written", 1), ("manifest_written", 1),
                ("merge_committed", 1), ("merge_removed", 1), ("merge_removed", 2),
                ("merge_committed", 2), ("warehouse_synced", 1)]


def _child(env: dict[str, str], point: str | None, nth: int, merge: bool,
           timer: float | None = None, options: dict[str, Any] | None = None) -> int:
    """Run one compaction (or merge) in a child process that SIGKILLs itself the ``nth``
    time it reaches ``point``; its exit code (0, or -9 when it was killed)."""
    cfg = {"env": env, "point": point, "nth": nth, "merge": merge,
           "options": OPTIONS if options is None else options}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(cfg)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        if timer is not None:
            try:
                proc.wait(timeout=timer)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode in (0, -signal.SIGKILL), err
    return proc.returncode


def _check_committed_state(data_dir: Path) -> None:
    """Whatever the kill, the manifest is whole and every file it lists is complete."""
    manifest = Lake(data_dir / "lake").read_manifest()
    for f in manifest.files.values():
        path = data_dir / "lake" / f.path
        assert path.stat().st_size == f.bytes, f.path
        assert pq.read_metadata(path).num_rows == f.rows, f.path


def _rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: con.execute(f"SELECT * FROM raw.{t} ORDER BY _topic, _partition, _offset")
                .fetchall() for t in lake_tables()}
    finally:
        con.close()


def _lake_rows(data_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    lake = Lake(data_dir / "lake")
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table in lake_tables():
        rows = []
        for f in lake.read_manifest().table_files(table):
            rows.extend(tuple(sorted(r.items())) for r in
                        pq.read_table(lake.path(f.path)).to_pylist())
        out[table] = sorted(rows, key=lambda r: (dict(r)["_topic"], dict(r)["_partition"],
                                                 dict(r)["_offset"]))
    return out


@pytest.mark.timeout(900)
def test_kill_9_at_any_point_then_a_normal_run_gives_the_uninterrupted_result(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    rnd = random.Random(20260822)
    produce(kafka_bootstrap, topic_prefix,
            messages((body(i) for i in range(250)), topic_prefix)
            + messages([b"{broken", b"\x00\x01"], topic_prefix))
    data = tmp_path / "killed"
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "RWI_TOPIC_PREFIX": topic_prefix,
           "RWI_DATA_DIR": str(data)}
    schedule: list[tuple[str | None, int, bool, float | None]] = []
    schedule += [(p, n, False, None) for p, n in COMPACT_POINTS]
    schedule += [(p, n, True, None) for p, n in MERGE_POINTS]
    schedule += [(None, 0, rnd.random() < 0.3, rnd.uniform(1.5, 3.0)) for _ in range(6)]
    rnd.shuffle(schedule)
    # The merges need small files; and traffic keeps arriving between runs, so every run
    # has work to be killed in.
    schedule.insert(0, ("committed", 8, False, None))
    outcomes = []
    sent = 250
    for point, nth, merge, timer in schedule:
        produce(kafka_bootstrap, topic_prefix,
                messages((body(i) for i in range(sent, sent + 15)), topic_prefix))
        sent += 15
        outcomes.append((point, nth, merge, timer, _child(env, point, nth, merge, timer)))
        _check_committed_state(data)
    killed = [o for o in outcomes if o[-1] == -signal.SIGKILL]
    assert len(killed) >= 20, [o for o in outcomes if o[-1] != -signal.SIGKILL]
    assert {o[0] for o in killed} >= {"row_group_written", "manifest_written", "committed"}

    settings = settings_for(kafka_bootstrap, topic_prefix, data)
    final = run_compact(settings, CompactSettings(**OPTIONS))
    assert final.status == "ok"
    reference_dir = tmp_path / "reference"
    reference = run_compact(settings_for(kafka_bootstrap, topic_prefix, reference_dir))
    assert reference.messages == sent + 2

    lake, ref_lake = Lake(data / "lake"), Lake(reference_dir / "lake")
    assert lake.read_manifest().offsets == ref_lake.read_manifest().offsets
    on_disk = {str(p.relative_to(lake.root)) for p in lake.root.rglob("*")
               if (p.is_file() and p.suffix == ".parquet") or p.name.endswith(".tmp")}
    assert on_disk == set(lake.read_manifest().files)  # nothing stray is left
    assert _lake_rows(data) == _lake_rows(reference_dir)
    published = WarehousePaths.under(data).published
    assert _rows(published) == _rows(WarehousePaths.under(reference_dir).published)
    assert not list(published.parent.glob(".*.tmp"))

    run_merge(settings, CompactSettings(**OPTIONS))
    assert _rows(published) == _rows(WarehousePaths.under(reference_dir).published)
    assert _lake_rows(data) == _lake_rows(reference_dir)


@pytest.mark.timeout(600)
def test_a_run_killed_by_a_timer_loses_nothing_already_committed(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    produce(kafka_bootstrap, topic_prefix, messages((body(i) for i in range(600)), topic_prefix))
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "RWI_TOPIC_PREFIX": topic_prefix,
           "RWI_DATA_DIR": str(tmp_path)}
    committed, kills = 0, 0
    for attempt in range(40):
        # Each run gets a little longer, so some die at start-up and some mid-way.
        returncode = _child(env, None, 0, False, timer=1.2 + 0.4 * attempt)
        offsets = Lake(tmp_path / "lake").read_manifest().offsets
        now = sum(offsets.values())
        assert now >= committed  # progress is never undone
        committed = now
        _check_committed_state(tmp_path)
        if returncode == 0:
            break
        kills += 1
    assert committed == 600 and kills >= 1
    db = WarehousePaths.under(tmp_path).published
    assert sum(_count(db, t) for t in lake_tables()) == 600


def _count(db: Path, table: str) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return int(con.execute(f"SELECT count(*) FROM raw.{table}").fetchall()[0][0])
    finally:
        con.close()
