"""Both sides of the event-id rule: same event -> same id; different events -> different ids."""

import json
from datetime import UTC, datetime

from pipelines.identity import (
    OccurrenceTracker,
    fact_key,
    occurrence_note,
    parse_occurrence_note,
)
from pipelines.ingest import BodyConverter

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def webhook(event_type: str, ts: str, event: dict, call_id: str = "C") -> bytes:  # type: ignore[type-arg]
    return json.dumps(
        {
            "rwi": "1.0",
            "timestamp": ts,
            "call_id": call_id,
            "event_type": event_type,
            "event": {"event_type": event_type, **event},
        }
    ).encode()


def ids(converter: BodyConverter, raw: bytes, source: str = "webhook") -> list[str]:
    return [e.event_id for e in converter.convert(raw, source=source, received_at=NOW).events]


RINGING = {"call_id": "C", "session_id": "C", "direction": "inbound"}


def test_redelivered_body_keeps_its_id() -> None:
    c = BodyConverter("pbx")
    body = webhook("call_ringing", "2026-08-22T15:33:10.1Z", RINGING)
    assert ids(c, body) == ids(c, body)


def test_identical_ringing_on_queue_retries_are_two_events() -> None:
    c = BodyConverter("pbx")
    first = ids(c, webhook("call_ringing", "2026-08-22T15:33:10.1Z", RINGING))
    second = ids(c, webhook("call_ringing", "2026-08-22T15:33:40.1Z", RINGING))
    assert first != second
    # ...and replaying both again maps onto the same two ids
    assert ids(c, webhook("call_ringing", "2026-08-22T15:33:40.1Z", RINGING)) == second


def test_by_design_duplicate_deliveries_collapse() -> None:
    c = BodyConverter("pbx")
    bridged = {"leg_a": "A", "leg_b": "B"}
    to_a = ids(c, webhook("call_bridged", "2026-08-22T15:33:10.000001Z", bridged, "A"))
    to_b = ids(c, webhook("call_bridged", "2026-08-22T15:33:10.000002Z", bridged, "B"))
    assert to_a == to_b
    # a later re-bridge of the same legs is a new event
    again = ids(c, webhook("call_bridged", "2026-08-22T15:35:00Z", bridged, "A"))
    assert again != to_a


def test_webhook_live_ws_and_resume_replay_agree() -> None:
    c = BodyConverter("pbx")
    ts = "2026-08-22T15:33:10.123456789+00:00"
    from_webhook = ids(c, webhook("call_ringing", ts, RINGING))
    live = ids(c, json.dumps({"event_type": "call_ringing", **RINGING}).encode(), "ws")
    replay = json.dumps(
        {
            "type": "command_completed",
            "action": "session.resume",
            "action_id": "r",
            "data": {
                "events": [
                    {
                        "timestamp": ts,
                        "call_id": "C",
                        "event": {
                            "event_type": "call_ringing",
                            "call_id": "C",
                            "payload": {"event_type": "call_ringing", "call_id": "C"},
                        },
                    }
                ]
            },
        }
    )
    replayed = ids(c, replay.encode(), "ws")
    assert from_webhook == live == replayed


def test_different_pbx_or_content_gives_different_ids() -> None:
    body = webhook("call_hangup", "2026-08-22T15:33:10Z", {"call_id": "C", "reason": "caller"})
    other = webhook("call_hangup", "2026-08-22T15:33:10Z", {"call_id": "C", "reason": "callee"})
    assert ids(BodyConverter("a"), body) != ids(BodyConverter("b"), body)
    c = BodyConverter("a")
    assert ids(c, body) != ids(c, other)


def test_v1_sequence_identifies_redeliveries() -> None:
    c = BodyConverter("pbx")
    body = json.dumps(
        {
            "rwi": "1.0",
            "sequence": 7,
            "timestamp": 1716212345,
            "call_id": "C",
            "event_type": "dtmf",
            "event": {"call_id": "C", "digit": "1"},
        }
    ).encode()
    again = body.replace(b'"sequence": 7', b'"sequence": 9')
    assert ids(c, body) == ids(c, body)
    assert ids(c, again) != ids(c, body)  # the same digit pressed again


def test_many_repetitions_get_consecutive_occurrences() -> None:
    from pipelines.identity import OccurrenceTracker

    tracker = OccurrenceTracker()
    got = [tracker.assign(b"k", "ws", "", None) for _ in range(5000)]
    assert got == list(range(5000))
    # the webhook copies of the same 5000 events join them one by one, by arrival order
    assert [tracker.assign(b"k", "webhook", "C", f"t{i}") for i in range(5000)] == got
    assert tracker.assign(b"k", "webhook", "C", "t42") == 42  # a redelivery


def test_an_occurrence_note_round_trips() -> None:
    key = fact_key("pbx", "call_ringing", {"call_id": "c1"})
    for instant in (None, "", "2026-11-02T08:00:00.123Z", "17"):
        note = occurrence_note(key, 3, "webhook", "c1", instant)
        assert parse_occurrence_note(note) == (key, 3, "webhook", "c1", instant, None)
    note = occurrence_note(key, 3, "ws", "", None, 1_764_000_000_000_000_123)
    assert parse_occurrence_note(note) == (key, 3, "ws", "", None, 1_764_000_000_000_000_123)
    assert parse_occurrence_note(b"short") is None
    assert parse_occurrence_note(note + b"x") is None  # arrival not a number
    assert parse_occurrence_note(note + b"\x00more") is None


def test_a_restored_tracker_numbers_like_the_one_that_was_restarted() -> None:
    """Replaying the decisions of a tracker into a fresh one (as a restarted ingest does from
    Kafka headers) continues the numbering: a new repetition gets the next occurrence and a
    redelivery with a known instant gets its old one."""
    key = fact_key("pbx", "agent_state_changed", {"agent_id": "1001", "to_status": "idle"})
    before = OccurrenceTracker()
    notes = [(key, before.assign(key, "webhook", "", f"t{i}"), "webhook", "", f"t{i}")
             for i in range(3)]
    assert [n[1] for n in notes] == [0, 1, 2]

    forgetful = OccurrenceTracker()
    assert forgetful.assign(key, "webhook", "", "t3") == 0  # what a restart used to do

    restored = OccurrenceTracker()
    for note in reversed(notes):  # order does not matter
        parsed = parse_occurrence_note(occurrence_note(*note))
        assert parsed is not None
        restored.restore(*parsed)
    assert restored.assign(key, "webhook", "", "t1") == 1  # a redelivery keeps its number
    assert restored.assign(key, "webhook", "", "t3") == 3  # a new repetition continues
    assert restored.assign(key, "websocket", "", None) == 0  # another path starts from 0


def _keys(*names: str) -> list[bytes]:
    return [fact_key("pbx", "agent_state_changed", {"to_status": n}) for n in names]


def test_a_replay_is_aligned_with_what_was_received_live() -> None:
    """A 1.0 resume replays the server's cache without sequence or timestamp: events received
    before the drop keep their occurrences, events missed during it are new — even when the
    same facts repeat, and when the cache holds events never sent to this session."""
    tracker = OccurrenceTracker()
    idle, busy, wrap, other, owner = _keys("idle", "busy", "wrap", "other", "owner-only")
    live = [idle, busy, wrap, idle, busy, wrap, idle, busy]
    got = [tracker.assign(k, "ws", "", None) for k in live]
    assert got == [0, 0, 0, 1, 1, 1, 2, 2]
    # The cache: the last four received live (with an event sent only to another session
    # in between), then three events of the gap.
    replay = [busy, wrap, owner, idle, busy, wrap, idle, other]
    aligned = tracker.align_replay(replay, "ws", "")
    assert aligned == [1, 1, None, 2, 2, None, None, None]
    assigned = [a if a is not None else tracker.assign(k, "ws", "", None)
                for k, a in zip(replay, aligned, strict=True)]
    assert assigned == [1, 1, 0, 2, 2, 2, 3, 0]
    # A second replay right after lines up with the first one's new events too.
    again = tracker.align_replay([wrap, idle, other], "ws", "")
    assert again == [2, 3, 0]


def test_a_replay_without_overlap_is_all_new() -> None:
    tracker = OccurrenceTracker()
    idle, busy, gap = _keys("idle", "busy", "gap")
    for k in (idle, busy):
        tracker.assign(k, "ws", "", None)
    assert tracker.align_replay([gap, gap], "ws", "") == [None, None]
    assert OccurrenceTracker().align_replay([gap], "ws", "") == [None]


def test_a_replay_passes_over_frames_the_server_does_not_cache() -> None:
    """The server's own session_resumed frame is received live but never cached: the
    alignment must not stop at it."""
    tracker = OccurrenceTracker()
    a, b, marker, c, d = _keys("a", "b", "session_resumed", "c", "d")
    for k in (a, b, marker, c):
        tracker.assign(k, "ws", "", None)
    assert tracker.align_replay([a, b, c, d], "ws", "") == [0, 0, 0, None]


def _replay(tracker: OccurrenceTracker, keys: list[bytes]) -> list[int | None]:
    """What BodyConverter.convert_replay does with the tracker: align, assign, rewrite."""
    aligned = tracker.align_replay(keys, "ws", "")
    start = tracker.replay_start
    assigned = [a if a is not None else tracker.assign(k, "ws", "", None)
                for k, a in zip(keys, aligned, strict=True)]
    tracker.rewrite_history("ws", "", start, list(zip(keys, assigned, strict=True)))
    return aligned


def test_replays_in_a_row_stay_aligned() -> None:
    """A replay delivers events never sent live (owner delivery) in among those received
    live; the history takes the replay's order, so the next, longer replay lines up too."""
    tracker = OccurrenceTracker()
    a, b, c, owner, gap1, d, gap2 = _keys("a", "b", "c", "owner", "gap1", "d", "gap2")
    for k in (a, b, c):
        tracker.assign(k, "ws", "", None)
    assert _replay(tracker, [a, owner, b, c, gap1]) == [0, None, 0, 0, None]
    tracker.assign(d, "ws", "", None)
    assert _replay(tracker, [a, owner, b, c, gap1, d, gap2]) == [0, 0, 0, 0, 0, 0, None]


def _v1_frame(status: str) -> bytes:
    """A live 1.0 WebSocket frame: neither sequence nor timestamp."""
    return json.dumps({"agent_state_changed": {"agent_id": "1001", "to_status": status}}).encode()


def _notes(converted: list) -> list:  # type: ignore[type-arg]
    return [parse_occurrence_note(value) for c in converted for m in c.messages
            for name, value in m.headers if name == "rwi.occurrence"]


def test_a_restarted_service_aligns_its_first_replay_like_the_one_before() -> None:
    """The history a 1.0 replay is aligned against is restored from the occurrence headers,
    in arrival order, so the first replay after a restart gives the events received before
    it their old ids instead of doubling them."""
    statuses = ["idle", "busy", "wrap", "idle", "busy", "wrap", "idle", "busy"]
    live = [(_v1_frame(s), NOW) for s in statuses]
    # The server's cache: the last five received live, then two missed during the drop.
    replay = [(_v1_frame(s), NOW) for s in [*statuses[3:], "wrap", "idle"]]
    before = BodyConverter("pbx")
    received = [before.convert(raw, source="ws", received_at=at) for raw, at in live]
    ids_live = [e.event_id for c in received for e in c.events]

    # What the service that was not restarted makes of the replay ...
    kept = [e.event_id for c in before.convert_replay(replay, source="ws") for e in c.events]
    assert kept[:5] == ids_live[3:]  # received live: the same ids
    assert not set(kept[5:]) & set(ids_live)  # missed: new ones

    # ... and what a restarted one makes of it, its tracker restored from the headers (read
    # back in any order, as partitions interleave).
    restarted = BodyConverter("pbx")
    for note in reversed(_notes(received)):
        assert note is not None and note.arrival is not None
        restarted.normalizer.tracker.restore(*note)
    assert restarted.normalizer.tracker.finish_restore() == len(statuses)
    again = [e.event_id for c in restarted.convert_replay(replay, source="ws") for e in c.events]
    assert again == kept

    # Without the history (headers written before arrivals were recorded) the replay doubled.
    forgetful = BodyConverter("pbx")
    for note in _notes(received):
        forgetful.normalizer.tracker.restore(*note[:5])
    doubled = [e.event_id for c in forgetful.convert_replay(replay, source="ws") for e in c.events]
    assert set(doubled[:5]).isdisjoint(ids_live[3:])


def test_a_replayed_event_keeps_its_latest_place_in_the_restored_history() -> None:
    """An event published again by a replay appears twice in the headers; the restored
    history follows the replay's order, as rewrite_history left it."""
    tracker = OccurrenceTracker(live_history=8)
    a, b, c = _keys("a", "b", "c")
    tracker.restore(a, 0, "ws", "", None, 10)
    tracker.restore(b, 0, "ws", "", None, 11)
    tracker.restore(c, 0, "ws", "", None, 12)
    tracker.restore(a, 0, "ws", "", None, 13)  # replayed after c
    tracker.restore(b, 0, "webhook", "C", "t1", None)  # has an instant: not in a history
    assert tracker.finish_restore() == 3
    assert list(tracker._history[("ws", "")]) == [(b, 0), (c, 0), (a, 0)]
    assert ("webhook", "C") not in tracker._history
