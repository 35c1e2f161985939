"""The acceptance check of the analytics tables: 5,000 simulated calls per dialect, with
duplicated deliveries and recording uploads arriving after the calls were built, equal the
simulator's ground truth on every field — through the test raw layer with an incremental
run for the late events, and through the production raw layer (ingest messages, compaction's
batch conversion, the warehouse's dedup views)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import duckdb
import pytest

from connectors.cli import cmd_simulate
from connectors.cli.main import main as rwi_etl
from pipelines.analytics import build_analytics, touched_since
from pipelines.analytics.verify import verify_report
from pipelines.settings import load_settings
from tests.fixtures.analytics.rawlayer import RawLayer
from tests.fixtures.analytics.staging import Feeder, load_events, read_bodies

pytestmark = pytest.mark.slow
CALLS = 5_000
UPLOADS = (b'"event_type":"recording_metadata_available"', b'"event_type":"record_end"')


def _simulate(tmp_path: Path, dialect: str, calls: int, seed: int) -> tuple[Path, Path]:
    """``rwi-etl simulate`` (its own parser, the same code the command runs)."""
    bodies, truth = tmp_path / f"{dialect}.jsonl", tmp_path / f"{dialect}.truth.jsonl"
    parser = argparse.ArgumentParser()
    cmd_simulate.register(parser.add_subparsers())
    args = parser.parse_args([
        "simulate", "--dialect", dialect, "--calls", str(calls), "--seed", str(seed),
        "--duplicates", "0.05", "--out", str(bodies), "--truth", str(truth)])
    assert args.handler(args, load_settings(environ={})) == 0
    return bodies, truth


def _is_upload(body: bytes) -> bool:
    return any(marker in body for marker in UPLOADS) or b'"recording_metadata_available"' in body


@pytest.mark.parametrize("dialect", ["current", "v1.0"])
def test_tables_equal_ground_truth_with_late_uploads(
    tmp_path: Path, dialect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies_file, truth_file = _simulate(tmp_path, dialect, CALLS, seed=17)
    bodies = read_bodies(bodies_file)
    late = [b for i, b in enumerate(bodies) if i % 2 == 0 and _is_upload(b)]
    held = {id(b) for b in late}
    on_time = [b for b in bodies if id(b) not in held]
    assert len(late) > 500

    db = tmp_path / "analytics.duckdb"
    con = duckdb.connect(str(db))
    feeder = Feeder()
    load_events(con, feeder.convert(on_time))
    assert build_analytics(con).mode == "full"
    early = verify_report(con, truth_file)
    assert early.mismatches and {m.kind for m in early.mismatches} <= {"recording"}

    watermark = feeder.clock
    load_events(con, feeder.convert(late), replace=False)
    touched = touched_since(con, "staging", received_after=watermark)
    assert build_analytics(con, touched=touched).mode == "incremental"
    con.close()

    capsys.readouterr()
    code = rwi_etl(["verify", "--truth", str(truth_file), "--db", str(db), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["mismatches"] == [] and code == 0
    assert report["rows"]["call"] > CALLS and report["rows"]["recording"] > 1000
    assert set(report["rows"]) >= {"call", "session", "ivr_path", "ivr_node_visit",
                                   "recording", "queue_call", "agent_state", "summary"}


@pytest.mark.parametrize("dialect", ["current", "v1.0"])
def test_production_raw_layer(tmp_path: Path, dialect: str) -> None:
    bodies_file, truth_file = _simulate(tmp_path, dialect, 1_500, seed=23)
    con = duckdb.connect()
    added = RawLayer(con).add(read_bodies(bodies_file))
    (deliveries, events), = con.execute(
        "SELECT sum(_deliveries), count(*) FROM staging.call").fetchall()
    assert deliveries > events  # duplicates landed in raw, the dedup view removed them
    assert added > 0
    build_analytics(con)
    assert verify_report(con, truth_file).mismatches == []
