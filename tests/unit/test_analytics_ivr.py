"""analytics.ivr_paths and ivr_node_visits: paths, digits, dwell, drop-off, app jumps and
step-mode sessions."""

from __future__ import annotations

from tests.fixtures.analytics.bodies import Call, at, rfc3339
from tests.fixtures.analytics.staging import build_from_bodies, rows


def _enter(c: Call, t: float, node: str, app: str, previous: str | None = None) -> None:
    c.body("ivr_node_entered", at(t), node_id=node, node_name=node.title(), node_type="menu",
           app_id=app, entry_time=rfc3339(at(t)), previous_node_id=previous)


def _exit(c: Call, t: float, node: str, value: str | None, nxt: str | None, since: float,
          hangup: str | None = None) -> None:
    c.body("ivr_node_exited", at(t), node_id=node, node_name=node.title(), result_value=value,
           duration_ms=int((t - since) * 1000), exit_time=rfc3339(at(t)), next_node_id=nxt,
           hangup_reason=hangup, call_result="hangup" if hangup else None)


def _complete(c: Call, t: float, app: str, result: str, target: str | None, nodes: int,
              since: float) -> None:
    c.body("ivr_flow_completed", at(t), app_id=app, total_nodes_traversed=nodes,
           total_duration_ms=int((t - since) * 1000), final_result=result,
           completion_time=rfc3339(at(t)), final_routing_target=target)


def test_drop_off_in_a_menu() -> None:
    c = Call("c-drop")
    c.start(at(0))
    _enter(c, 1, "welcome", "ivr_main")
    _exit(c, 4, "welcome", "menu", "main_menu", 1)
    _enter(c, 4.1, "main_menu", "ivr_main", "welcome")
    _exit(c, 9.25, "main_menu", None, None, 4.1, hangup="remote_hangup")
    _complete(c, 9.25, "ivr_main", "remote_hangup", None, 2, 1)
    c.hangup(at(9.3), "caller", "caller")
    con = build_from_bodies(c.bodies)
    (path,) = rows(con, "SELECT * FROM analytics.ivr_paths")
    assert path["path"] == ["welcome", "main_menu"] and path["node_count"] == 2
    assert path["abandoned"] is True and path["exit_node_id"] == "main_menu"
    assert path["total_ms"] == 8250 and path["digits"] == ""
    visits = rows(con, "SELECT * FROM analytics.ivr_node_visits ORDER BY visit_index")
    assert [v["dwell_ms"] for v in visits] == [3000, 5150]
    assert visits[0]["next_node_id"] == "main_menu" and visits[1]["hangup_reason"]
    (call,) = rows(con, "SELECT * FROM analytics.calls")
    assert call["outcome"] == "abandoned" and call["ivr_app_id"] == "ivr_main"


def test_retry_jump_to_another_app_and_digits() -> None:
    c = Call("c-jump")
    c.start(at(0))
    _enter(c, 1, "main_menu", "ivr_main")
    _exit(c, 3, "main_menu", "7", "main_menu", 1)  # invalid key: the menu again
    _enter(c, 3.1, "main_menu", "ivr_main", "main_menu")
    _exit(c, 5, "main_menu", "2", "support_menu", 3.1)
    _enter(c, 5.1, "support_menu", "ivr_main", "main_menu")
    _exit(c, 8, "support_menu", "2", None, 5.1)
    _complete(c, 8, "ivr_main", "transferred", "ivr:ivr_tech", 3, 1)
    _enter(c, 8.2, "tech_menu", "ivr_tech")
    _exit(c, 11, "tech_menu", "1", None, 8.2)
    _complete(c, 11, "ivr_tech", "transferred", "queue:tech", 1, 8.2)
    c.hangup(at(12), "caller", "caller")
    con = build_from_bodies(c.bodies)
    paths = rows(con, "SELECT * FROM analytics.ivr_paths ORDER BY ivr_index")
    assert [p["app_id"] for p in paths] == ["ivr_main", "ivr_tech"]
    assert paths[0]["path"] == ["main_menu", "main_menu", "support_menu"]
    assert paths[0]["digits"] == "722" and paths[0]["next_app_id"] == "ivr_tech"
    assert paths[1]["final_routing_target"] == "queue:tech" and paths[1]["digits"] == "1"
    assert [v["visit_index"] for v in rows(
        con, "SELECT * FROM analytics.ivr_node_visits WHERE app_id = 'ivr_tech'")] == [0]


def test_step_mode_session() -> None:
    c = Call("c-step")
    c.start(at(0))
    for i, (trigger, action, end) in enumerate(
        [("session_start", "Prompt", None), ("dtmf", "Transfer", "transfer_to_queue")]
    ):
        fields = {"session_id": "c-step", "caller": c.caller, "callee": c.callee,
                  "step_index": i, "trigger": {"type": trigger}, "action_type": action,
                  "action_json": None, "duration_ms": 400, "error": None,
                  "step_id": f"step_{i}", "step_name": action.lower(),
                  "step_start_time": rfc3339(at(1 + 5 * i)),
                  "step_end_time": rfc3339(at(1.4 + 5 * i)), "extra": None, "sip_headers": None}
        if end:
            fields["end_reason"] = end
        c.body("ivr_step_trace", at(1.4 + 5 * i), **fields)
    c.hangup(at(30), "caller", "caller")
    con = build_from_bodies(c.bodies)
    (path,) = rows(con, "SELECT * FROM analytics.ivr_paths")
    assert path["ivr_kind"] == "step" and path["path"] == ["step_0", "step_1"]
    assert path["final_result"] == "transfer_to_queue" and path["abandoned"] is False
    (call,) = rows(con, "SELECT * FROM analytics.calls")
    assert call["ivr_app_id"] is None and call["ivr_runs"] == 1
