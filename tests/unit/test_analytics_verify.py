"""verify: every kind of difference is reported, and the CLI's exit code says so."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from connectors.cli.main import main as rwi_etl
from pipelines.analytics.verify import verify, verify_report
from tests.fixtures.analytics.bodies import queued_call
from tests.fixtures.analytics.staging import build_from_bodies


def _truth() -> list[dict]:
    return [
        {"kind": "call", "call_id": "c-queued", "session_id": "c-queued",
         "answered_at": "2026-11-02T09:00:20.000000Z", "talk_ms": 180000, "outcome": "answered",
         "complete": True, "agent_id": "1001", "dialect": "current"},
        {"kind": "queue_call", "call_id": "c-queued", "queue_id": "sales", "wait_ms": 14000,
         "result": "connected", "offer_count": 1},
        {"kind": "summary", "calls_started": 1, "calls_ended": 1, "sessions": 1},
    ]


def test_equal_tables_have_no_mismatch() -> None:
    con = build_from_bodies(queued_call("current").bodies)
    report = verify_report(con, _truth())
    assert report.ok and report.rows == {"call": 1, "queue_call": 1, "summary": 1}


def test_each_kind_of_difference_is_reported() -> None:
    con = build_from_bodies(queued_call("current").bodies)
    truth = _truth()
    truth[0] = {**truth[0], "talk_ms": 180001, "answered_at": "2026-11-02T09:00:21Z",
                "no_such_column": 1}
    truth.append({"kind": "call", "call_id": "c-missing", "outcome": "answered"})
    truth.append({"kind": "summary", "calls_started": 1, "calls_ended": 1, "sessions": 1})
    got = {(m.kind, m.field, m.problem) for m in verify(con, truth)}
    assert got == {
        ("call", "talk_ms", "value"),
        ("call", "answered_at", "value"),
        ("call", "no_such_column", "missing_column"),
        ("call", "*", "missing_row"),
        ("summary", "calls_started", "value"),
        ("summary", "calls_ended", "value"),
        ("summary", "sessions", "value"),
    }
    con.execute("DELETE FROM analytics.queue_calls")
    assert ("queue_call", "*", "missing_row") in {
        (m.kind, m.field, m.problem) for m in verify(con, _truth())}


def test_rows_the_truth_does_not_know_are_reported() -> None:
    con = build_from_bodies([*queued_call("current").bodies,
                             *queued_call("current", "c-other").bodies])
    problems = {(m.kind, m.key) for m in verify(con, _truth()) if m.problem == "extra_row"}
    assert problems == {("call", ("c-other",)), ("queue_call", ("c-other", "sales"))}


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "rwi.duckdb"
    con = build_from_bodies(queued_call("current").bodies, duckdb.connect(str(db)))
    con.close()
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in _truth()))
    bad.write_text("".join(json.dumps({**r, "wait_ms": 1} if r["kind"] == "queue_call" else r)
                           + "\n" for r in _truth()))
    assert rwi_etl(["verify", "--truth", str(good), "--db", str(db)]) == 0
    assert "OK" in capsys.readouterr().out
    assert rwi_etl(["verify", "--truth", str(bad), "--db", str(db), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["mismatch_count"] == 1 and doc["mismatches"][0]["field"] == "wait_ms"
    assert rwi_etl(["verify", "--truth", str(tmp_path / "nope.jsonl"), "--db", str(db)]) == 2
