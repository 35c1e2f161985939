"""analytics.recordings: record_* events, the late upload events of both dialects, and an
incremental run that updates the row when the upload arrives after the call was built."""

from __future__ import annotations

import pytest

from pipelines.analytics import build_analytics, touched_since
from tests.fixtures.analytics.bodies import Call, at, rfc3339
from tests.fixtures.analytics.staging import Feeder, load_events, rows


def _recorded_call(dialect: str) -> tuple[Call, list[dict], list[dict]]:
    """A recorded, paused and resumed call; returns (call, live bodies, late upload bodies)."""
    c = Call("c-rec", dialect, direction="outbound")
    c.start(at(0))
    c.body("call_answered", at(4))
    c.body("record_started", at(5))
    c.body("record_paused", at(30))
    c.body("record_resumed", at(40))
    stop = {"duration_secs": 55, "filename": "c-rec.wav", "unique_id": "rec-1",
            "file_size": 880_044}
    if dialect == "v1.0":
        stop |= {"download_url": "https://storage.example.com/rec/c-rec.wav", "agent_id": "1001",
                 "call_type": "outbound"}
    c.body("record_stopped", at(70), **stop)
    c.hangup(at(70), "caller", "caller")
    live = list(c.bodies)
    meta = {"filename": "c-rec.wav", "file_size": 880_044, "call_type": "outbound",
            "download_url": "https://storage.example.com/rec/c-rec.wav",
            "upload_time": rfc3339(at(3600)), "agent_id": "1001"}
    if dialect == "v1.0":
        meta |= {"unique_id": "rec-1", "upload_time": "2026-11-02T10:00:00Z"}
    c.body("recording_metadata_available", at(3601), metadata=meta)
    c.body("record_end", at(3601.5), url=meta["download_url"], duration_secs=70,
           file_size=880_044)
    return c, live, c.bodies[len(live):]


@pytest.mark.parametrize("dialect", ["current", "v1.0"])
def test_late_upload_updates_the_recording_incrementally(dialect: str) -> None:
    _, live, late = _recorded_call(dialect)
    feeder = Feeder()
    import duckdb

    con = duckdb.connect()
    load_events(con, feeder.convert(live))
    build_analytics(con)
    (before,) = rows(con, "SELECT * FROM analytics.recordings")
    assert before["status"] == "stopped" and before["uploaded_at"] is None
    assert before["pause_count"] == 1 and before["paused_ms"] == 10_000
    assert before["started_at"] == at(5) and before["stopped_at"] == at(70)

    watermark = feeder.clock
    load_events(con, feeder.convert(late), replace=False)
    touched = touched_since(con, "staging", received_after=watermark)
    assert touched.call_ids == {"c-rec"}
    result = build_analytics(con, touched=touched)
    assert result.mode == "incremental"
    (after,) = rows(con, "SELECT * FROM analytics.recordings")
    assert after["status"] == "available"
    assert after["uploaded_at"] == at(3600)
    assert after["download_url"] == "https://storage.example.com/rec/c-rec.wav"
    assert after["agent_id"] == "1001" and after["call_type"] == "outbound"
    assert after["duration_secs"] == 55  # the recording's, not record_end's call length
    assert after["recording_id"] == "rec-1"
    (call,) = rows(con, "SELECT * FROM analytics.calls")
    assert call["recording_count"] == 1 and call["recordings_available"] == 1

    incremental = rows(con, "SELECT * FROM analytics.recordings")
    build_analytics(con)  # full rebuild over the same events
    assert rows(con, "SELECT * FROM analytics.recordings") == incremental


def test_record_failed_and_automatic_recordings() -> None:
    legacy = Call("c-fail", "v1.0")
    legacy.start(at(0))
    legacy.body("call_answered", at(1))
    legacy.body("record_started", at(2))
    legacy.body("record_failed", at(9), error="disk full")
    legacy.hangup(at(20), "caller", "caller")
    today = Call("c-auto")
    today.start(at(0))
    today.body("call_answered", at(1))
    today.body("record_stopped", at(30), duration_secs=29, filename="/rec/c-auto.wav",
               unique_id="c-auto", file_size=464_044)
    today.hangup(at(30), "caller", "caller")
    con = duckdb_from([*legacy.bodies, *today.bodies])
    got = {r["call_id"]: r for r in rows(con, "SELECT * FROM analytics.recordings")}
    assert got["c-fail"]["status"] == "failed" and got["c-fail"]["error"] == "disk full"
    assert got["c-fail"]["stopped_at"] is None and got["c-fail"]["failed_at"] == at(9)
    assert got["c-fail"]["recording_id"] == "uuid-c-fail"  # the 1.0 call uuid
    assert got["c-auto"]["started_at"] is None  # automatic: no record_started today
    assert got["c-auto"]["status"] == "stopped" and got["c-auto"]["filename"] == "/rec/c-auto.wav"


def duckdb_from(bodies: list[dict]):
    from tests.fixtures.analytics.staging import build_from_bodies

    return build_from_bodies(bodies)
