"""analytics.calls and queue_calls from hand-built event sequences: answer time of queued
calls, duplicated deliveries, abandons, and both dialects giving the same rows."""

from __future__ import annotations

import pytest

from tests.fixtures.analytics.bodies import Call, at, queued_call
from tests.fixtures.analytics.staging import build_from_bodies, rows


@pytest.mark.parametrize("dialect", ["current", "v1.0"])
def test_queued_call_is_answered_when_the_agent_connects(dialect: str) -> None:
    con = build_from_bodies(queued_call(dialect).bodies)
    (call,) = rows(con, "SELECT * FROM analytics.calls")
    assert call["answered_at"] == at(20)  # queue_agent_connected, no call_answered sent
    assert call["outcome"] == "answered"
    assert call["ringing_at"] == at(8)
    assert call["ring_ms"] == 12_000
    assert call["talk_ms"] == 180_000
    assert call["total_ms"] == 200_000
    assert call["hold_ms"] == 30_000 and call["hold_count"] == 1
    assert call["queue_id"] == "sales" and call["queue_wait_ms"] == 14_000
    assert call["agent_id"] == "1001"
    assert call["ivr_app_id"] == "ivr_main" and call["ivr_result"] == "transferred"
    assert call["recording_count"] == 1
    assert call["hangup_reason"] == "caller"
    assert call["complete"] is True
    (stay,) = rows(con, "SELECT * FROM analytics.queue_calls")
    assert stay["result"] == "connected" and stay["wait_ms"] == 14_000
    assert stay["within_service_level"] is True  # 14 s <= 20 s


def test_an_ivr_picking_up_is_not_an_answer() -> None:
    c = Call("c-ivr-only")
    c.start(at(0))
    c.body("ivr_node_entered", at(1), node_id="main_menu", node_name="Main", node_type="menu",
           app_id="ivr_main", entry_time=None)
    c.body("ivr_node_exited", at(9), node_id="main_menu", node_name="Main", result_value="#",
           duration_ms=8000, exit_time=None, next_node_id=None, hangup_reason=None,
           call_result=None)
    c.body("ivr_flow_completed", at(9), app_id="ivr_main", total_nodes_traversed=1,
           total_duration_ms=8000, final_result="hangup", completion_time=None,
           final_routing_target=None)
    c.hangup(at(10), "system", "system")
    (call,) = rows(con := build_from_bodies(c.bodies), "SELECT * FROM analytics.calls")
    assert call["answered_at"] is None and call["talk_ms"] is None
    assert call["outcome"] != "answered"
    (day,) = rows(con, "SELECT * FROM analytics.daily")
    assert day["ivr_contained"] == 1 and day["ivr_containment_rate"] == 1.0


@pytest.mark.parametrize("dialect", ["current", "v1.0"])
def test_abandoned_in_queue(dialect: str) -> None:
    con = build_from_bodies(queued_call(dialect, answer=False).bodies)
    (call,) = rows(con, "SELECT * FROM analytics.calls")
    assert call["outcome"] == "abandoned"
    assert call["answered_at"] is None and call["talk_ms"] is None
    assert call["queue_wait_ms"] == 34_000
    (stay,) = rows(con, "SELECT * FROM analytics.queue_calls")
    assert stay["result"] == "abandoned" and stay["within_service_level"] is False
    (day,) = rows(con, "SELECT * FROM analytics.daily")
    assert day["abandoned_calls"] == 1 and day["abandon_rate"] == 1.0
    assert day["service_level"] == 0.0


def test_queue_timeout_today_is_not_an_abandon() -> None:
    """Today's queue app says ``abandoned`` for every unconnected exit."""
    c = Call("c-timeout")
    c.start(at(0))
    c.body("queue_joined", at(1), queue_id="support")
    c.body("queue_wait_timeout", at(301), queue_id="support")
    c.body("queue_left", at(301), queue_id="support", reason="abandoned")
    c.body("queue_fallback_executed", at(301), queue_id="support", action="hangup",
           reason="no_agent", trace_id="c-timeout")
    c.hangup(at(302), "system", "system")
    (stay,) = rows(build_from_bodies(c.bodies), "SELECT * FROM analytics.queue_calls")
    assert stay["result"] == "timeout" and stay["fallback_action"] == "hangup"


def test_bridge_delivered_twice_and_redeliveries_do_not_double() -> None:
    a = Call("leg-a", direction="outbound", caller="sip:rwi@pbx.local", callee="sip:8001@pbx")
    b = Call("leg-b", direction="outbound", caller="sip:rwi@pbx.local", callee="sip:1555@c")
    for leg, answered in ((a, 3), (b, 10)):
        leg.start(at(0 if leg is a else 4))
        leg.body("call_ringing", at(1 if leg is a else 5))
        leg.body("call_answered", at(answered))
    bridge = a.bridged(at(11), "leg-b")  # two deliveries, one per leg
    assert len(bridge) == 2
    hold = b.body("media_hold_started", at(20))
    unhold = b.body("media_hold_stopped", at(50))
    end_b = b.hangup(at(100), "callee", "callee")
    end_a = a.hangup(at(101), "caller", "caller")
    # Every body of leg b arrives twice (a webhook retry by a proxy, a replay).
    bodies = [*a.bodies, *b.bodies, hold, unhold, end_b, *bridge, end_a]
    con = build_from_bodies(bodies)
    assert rows(con, "SELECT count(*) AS n FROM staging.call WHERE event_type = 'call_bridged'")[
        0
    ]["n"] == 1
    got = {r["call_id"]: r for r in rows(con, "SELECT * FROM analytics.calls")}
    assert got["leg-a"]["bridged_at"] == got["leg-b"]["bridged_at"] == at(11)
    assert got["leg-b"]["hold_count"] == 1 and got["leg-b"]["hold_ms"] == 30_000
    assert got["leg-b"]["talk_ms"] == 90_000 and got["leg-a"]["talk_ms"] == 98_000
    assert got["leg-a"]["bridged_with"] == "leg-b"


def test_originate_failures_end_without_hangup() -> None:
    busy = Call("o-busy", direction="outbound")
    busy.start(at(0))
    busy.body("call_busy", at(2))
    nobody = Call("o-noanswer", direction="outbound")
    nobody.start(at(0))
    nobody.body("call_ringing", at(1))
    nobody.body("call_no_answer", at(61))
    running = Call("o-running", direction="outbound")
    running.start(at(0))
    running.body("call_answered", at(3))
    con = build_from_bodies([*busy.bodies, *nobody.bodies, *running.bodies])
    got = {r["call_id"]: r for r in rows(con, "SELECT * FROM analytics.calls")}
    assert got["o-busy"]["outcome"] == "busy" and got["o-busy"]["ended_at"] == at(2)
    assert got["o-noanswer"]["outcome"] == "no_answer"
    assert got["o-noanswer"]["ring_ms"] == 60_000
    assert got["o-running"]["outcome"] == "in_progress"
    assert got["o-running"]["complete"] is False and got["o-running"]["talk_ms"] is None


@pytest.mark.parametrize(
    ("reason", "sip", "outcome"),
    [
        ("rejected", 486, "busy"),
        ("rejected", 603, "rejected"),
        ("canceled", 487, "canceled"),
        ("noAnswer", 480, "no_answer"),
        ("serverUnavailable", 503, "failed"),
        ("originate_failed", 404, "failed"),
    ],
)
def test_outcome_of_unanswered_calls(reason: str, sip: int, outcome: str) -> None:
    c = Call("c-direct", callee="sip:2001@pbx.local")
    c.start(at(0))
    c.hangup(at(5), reason, "system", sip)
    (call,) = rows(build_from_bodies(c.bodies), "SELECT * FROM analytics.calls")
    assert call["outcome"] == outcome and call["sip_status"] == sip


def test_both_dialects_give_the_same_rows() -> None:
    """The same facts (at whole seconds, which 1.0 can carry) in either dialect."""
    current = build_from_bodies(queued_call("current").bodies)
    legacy = build_from_bodies(queued_call("v1.0").bodies)
    differ = {"recording_id", "uuid", "root_call_id", "hangup_by", "pbx", "created_sequence",
              "joined_sequence"}
    for table, key in (("calls", "call_id"), ("queue_calls", "call_id"),
                       ("ivr_paths", "call_id"), ("ivr_node_visits", "call_id"),
                       ("sessions", "session_id")):
        a = rows(current, f"SELECT * EXCLUDE (dialect) FROM analytics.{table} ORDER BY {key}")
        b = rows(legacy, f"SELECT * EXCLUDE (dialect) FROM analytics.{table} ORDER BY {key}")
        assert len(a) == len(b) == 1
        strip = [{k: v for k, v in r.items() if k not in differ} for r in (a[0], b[0])]
        assert strip[0] == strip[1], table
