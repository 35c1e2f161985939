"""The rare shapes that need ordering: several recordings in one call, a call queued twice
in the same queue, hold sequences with a lost event, a hold still open on a live call."""

from __future__ import annotations

from tests.fixtures.analytics.bodies import Call, at, rfc3339
from tests.fixtures.analytics.staging import build_from_bodies, rows


def test_several_recordings_in_one_call() -> None:
    c = Call("c-two-recs", direction="outbound")
    c.start(at(0))
    c.body("call_answered", at(2))
    for n, (start, stop) in enumerate(((5, 20), (30, 60))):
        c.body("record_started", at(start))
        c.body("record_stopped", at(stop), duration_secs=stop - start, filename=f"r{n}.wav",
               unique_id=f"rec-{n}", file_size=1000 * (n + 1))
    c.hangup(at(61), "caller", "caller")
    for n in range(2):
        c.body("recording_metadata_available", at(100 + n),
               metadata={"filename": f"r{n}.wav", "file_size": 1000 * (n + 1),
                         "call_type": "outbound", "download_url": f"/archive/r{n}.wav",
                         "upload_time": rfc3339(at(99 + n))})
        c.body("record_end", at(100.5 + n), url=f"/archive/r{n}.wav", duration_secs=61,
               file_size=1000 * (n + 1))
    con = build_from_bodies(c.bodies)
    got = rows(con, "SELECT * FROM analytics.recordings ORDER BY recording_index")
    assert [(r["recording_id"], r["started_at"], r["stopped_at"], r["download_url"])
            for r in got] == [("rec-0", at(5), at(20), "/archive/r0.wav"),
                              ("rec-1", at(30), at(60), "/archive/r1.wav")]
    assert [r["uploaded_at"] for r in got] == [at(99), at(100)]
    assert rows(con, "SELECT recording_count FROM analytics.calls")[0]["recording_count"] == 2


def test_queued_twice_in_the_same_queue() -> None:
    c = Call("c-requeue")
    c.start(at(0))
    c.body("queue_joined", at(1), queue_id="sales")
    c.body("queue_agent_offered", at(3), queue_id="sales", agent_id="1001")
    c.body("queue_left", at(10), queue_id="sales", reason="requeued")
    c.body("queue_joined", at(11), queue_id="sales")
    c.body("queue_agent_offered", at(12), queue_id="sales", agent_id="1002")
    c.body("queue_agent_connected", at(15), queue_id="sales", agent_id="1002")
    c.body("queue_left", at(15), queue_id="sales", reason="connected")
    c.hangup(at(100), "caller", "caller")
    con = build_from_bodies(c.bodies)
    stays = rows(con, "SELECT * FROM analytics.queue_calls ORDER BY joined_at")
    assert [(s["result"], s["wait_ms"], s["offer_count"], s["agent_id"]) for s in stays] == [
        ("requeued", 9_000, 1, None), ("connected", 4_000, 1, "1002")]
    (call,) = rows(con, "SELECT * FROM analytics.calls")
    assert call["answered_at"] == at(15) and call["queue_wait_ms"] == 14_000
    assert call["queue_stays"] == 2 and call["agent_id"] == "1002"


def _held(call_id: str, events: list[tuple[str, float]], end: float | None) -> dict:
    c = Call(call_id, direction="outbound")
    c.start(at(0))
    c.body("call_answered", at(1))
    for kind, when in events:
        c.body(kind, at(when))
    if end is not None:
        c.hangup(at(end), "caller", "caller")
    (call,) = rows(build_from_bodies(c.bodies), "SELECT * FROM analytics.calls")
    return call


def test_hold_sequences() -> None:
    start, stop = "media_hold_started", "media_hold_stopped"
    # Alternating holds, the last one closed by the hangup.
    call = _held("h1", [(start, 10), (stop, 20), (start, 30)], end=40)
    assert call["hold_ms"] == 20_000 and call["hold_count"] == 2
    # A lost start: the stray stop pairs with nothing.
    call = _held("h2", [(start, 10), (stop, 20), (stop, 25)], end=40)
    assert call["hold_ms"] == 10_000 and call["hold_count"] == 1
    # A lost stop: the n-th start pairs with the n-th stop, the rest last until the end.
    call = _held("h3", [(start, 10), (start, 15), (stop, 20)], end=40)
    assert call["hold_ms"] == 10_000 + 25_000 and call["hold_count"] == 2
    # A hold still open on a live call is not counted yet.
    call = _held("h4", [(start, 10), (stop, 12), (start, 30)], end=None)
    assert call["hold_ms"] == 2_000 and call["outcome"] == "in_progress"
