"""The ground truth equals an independent recount of the emitted events, in both dialects,
for finished runs and for runs stopped while calls are still up."""

from __future__ import annotations

import json

import pytest

from tests.unit.test_simulator_support import (
    by_type,
    recount_agent_states,
    recount_calls,
    recount_ivr,
    recount_queue_calls,
    recount_recordings,
    simulate,
    truth_rows,
)

RUNS = [("current", None), ("v1.0", None), ("current", 12), ("v1.0", 12)]
IDS = ["current", "v1.0", "current-stopped", "v1.0-stopped"]


def _strip(rows: list[dict], *drop: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("kind", "dialect", *drop)} for r in rows]


@pytest.mark.parametrize(("dialect", "stop"), RUNS, ids=IDS)
def test_summary_counts_match_a_recount_of_the_bodies(dialect: str, stop: int | None) -> None:
    bodies, lines = simulate(dialect, 400, 7, True, stop)
    summary = truth_rows(lines, "summary")[0]
    assert summary["deliveries_by_type"] == by_type(bodies)
    assert summary["bodies_written"] == len(bodies)
    assert sum(summary["events_by_type"].values()) == summary["events_total"]
    assert all(summary["events_by_type"][k] <= n for k, n in summary["deliveries_by_type"].items())
    started = sum(1 for b in bodies if json.loads(b)["event_type"] in ("call_created",
                                                                      "call_incoming"))
    assert summary["calls_started"] == started
    assert summary["calls_started"] == summary["calls_ended"] + summary["calls_in_progress"]
    calls = truth_rows(lines, "call")
    assert len(calls) == started
    assert sum(1 for c in calls if c["outcome"] == "in_progress") == summary["calls_in_progress"]
    assert summary["sessions"] == len(truth_rows(lines, "session"))
    if stop is None:
        assert summary["complete"] and summary["calls_in_progress"] == 0
    else:
        assert not summary["complete"] and summary["calls_in_progress"] > 0


@pytest.mark.parametrize(("dialect", "stop"), RUNS, ids=IDS)
def test_call_rows_equal_the_recount(dialect: str, stop: int | None) -> None:
    bodies, lines = simulate(dialect, 400, 7, True, stop)
    truth = {r["call_id"]: r for r in truth_rows(lines, "call")}
    assert truth == recount_calls(bodies, dialect)
    outcomes = {r["outcome"] for r in truth.values()}
    assert {"answered", "abandoned", "no_answer", "busy", "canceled", "failed"} <= outcomes


@pytest.mark.parametrize(("dialect", "stop"), RUNS, ids=IDS)
def test_ivr_recording_queue_and_agent_rows_equal_the_recount(dialect: str,
                                                             stop: int | None) -> None:
    bodies, lines = simulate(dialect, 400, 7, True, stop)

    def key(r: dict) -> str:
        return json.dumps(r, sort_keys=True)

    assert sorted(_strip(truth_rows(lines, "ivr_path")), key=key) == \
        sorted(recount_ivr(bodies), key=key)
    recordings = {r["call_id"]: r for r in _strip(truth_rows(lines, "recording"), "pause_count")}
    assert recordings == recount_recordings(bodies, dialect)
    assert sorted(_strip(truth_rows(lines, "queue_call"), "session_id"), key=key) == \
        sorted(recount_queue_calls(bodies), key=key)
    assert sorted(_strip(truth_rows(lines, "agent_state")), key=key) == \
        sorted(recount_agent_states(bodies), key=key)


def test_node_visits_add_up_to_paths() -> None:
    _, lines = simulate("v1.0", 400, 7)
    paths = truth_rows(lines, "ivr_path")
    visits = truth_rows(lines, "ivr_node_visit")
    assert sum(p["node_count"] for p in paths) == len(visits)
    assert all(v["dwell_ms"] is None or v["dwell_ms"] >= 0 for v in visits)
    assert {v["node_type"] for v in visits} == {"prompt", "menu"}
    assert any(p["abandoned"] for p in paths)


def test_v1_truth_has_whole_second_call_times_and_current_microseconds() -> None:
    _, v1 = simulate("v1.0", 400, 7)
    _, cur = simulate("current", 400, 7)
    v1_created = [c["created_at"] for c in truth_rows(v1, "call")]
    assert all(t.endswith(".000000Z") for t in v1_created)
    cur_created = [c["created_at"] for c in truth_rows(cur, "call")]
    assert sum(not t.endswith(".000000Z") for t in cur_created) > len(cur_created) // 2
    assert all(c["hangup_by"] is None for c in truth_rows(v1, "call"))


def test_truth_lines_are_sorted_and_typed() -> None:
    _, lines = simulate("current", 400, 7)
    kinds = [json.loads(line)["kind"] for line in lines]
    assert kinds[0] == "summary"
    order = ["summary", "session", "call", "ivr_path", "ivr_node_visit", "queue_call",
             "recording", "agent_state"]
    assert [order.index(k) for k in kinds] == sorted(order.index(k) for k in kinds)
    call = truth_rows(lines, "call")[0]
    assert list(call)[:27] == [
        "kind", "call_id", "session_id", "direction", "caller", "callee", "trunk",
        "created_at", "ringing_at", "answered_at", "ended_at", "ring_ms", "talk_ms",
        "hold_ms", "total_ms", "outcome", "hangup_reason", "hangup_by", "sip_status",
        "transfer_count", "hold_count", "queue_id", "queue_wait_ms", "agent_id", "ivr_app_id",
        "recording_count", "dialect"]


@pytest.mark.parametrize("dialect", ["current", "v1.0"])
@pytest.mark.parametrize("stop", [2, 5, 9, 17, 30])
def test_truth_holds_wherever_a_run_is_cut(dialect: str, stop: int) -> None:
    bodies, lines = simulate(dialect, 150, 13, True, stop)
    assert {r["call_id"]: r for r in truth_rows(lines, "call")} == recount_calls(bodies, dialect)
    recordings = {r["call_id"]: r for r in _strip(truth_rows(lines, "recording"), "pause_count")}
    assert recordings == recount_recordings(bodies, dialect)
    assert len(truth_rows(lines, "ivr_path")) == len(recount_ivr(bodies))
