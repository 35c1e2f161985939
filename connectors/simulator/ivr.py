"""IVR traversals: menu trees (node enter/exit, DTMF, app jumps) and step-mode sessions."""

from __future__ import annotations

import json
from typing import Any

from connectors.simulator.builder import Gen
from connectors.simulator.records import IvrRun, IvrVisit, Leg
from connectors.simulator.templates import raw_json
from connectors.simulator.timefmt import US
from connectors.simulator.topology import IVR_APPS, STEP_APP_ID

MAX_RETRIES = 3
# Today's tree app tags each exit with the kind of action it leads to.
_ACTION_TYPE = {action: raw_json({"action_type": kind}) for action, kind in {
    "queue": "queue", "menu": "menu", "jump_ivr": "jump_ivr", "voicemail": "other",
    "hangup": "other", "invalid": "menu", "timeout": "menu"}.items()}
_ABANDON_EXTRA = raw_json({"action_type": "other"})


def run_ivr(g: Gen, t: int, leg: Leg, app_id: str) -> tuple[int, str, str | None]:
    """Run the caller through IVR apps; returns (instant, outcome, target).

    Outcomes: ``queue`` (target = queue id), ``voicemail``, ``hangup`` (the IVR ended the
    call) and ``abandoned`` (the caller hung up inside the IVR).
    """
    if app_id == STEP_APP_ID:
        return _run_steps(g, t, leg)
    while True:
        t, outcome, target = _run_tree(g, t, leg, app_id)
        if outcome != "jump_ivr":
            return t, outcome, target
        assert target is not None
        to_root = IVR_APPS[target].root
        if g.v1:
            g.emit(t, "ivr_flow_transitioned", leg, {
                "from_app_id": app_id, "to_app_id": target,
                "from_node_id": leg.ivr_runs[-1].visits[-1].node_id, "to_node_id": to_root,
                "transition_reason": "menu_choice", "transition_time": t,
                "next_routing_target": f"ivr:{target}"})
        app_id = target
        t += g.uni(0.05, 0.3)


def _run_tree(g: Gen, t: int, leg: Leg, app_id: str) -> tuple[int, str, str | None]:
    app = IVR_APPS[app_id]
    run = IvrRun(app_id, "tree", t)
    leg.ivr_runs.append(run)
    if leg.app_at is None:
        leg.app_at = t
    g.v1_context(t, leg, app_id=app_id, routing_target=f"ivr:{app_id}")
    node = app.nodes[app.root]
    previous: str | None = None
    retries = 0
    while True:
        # Today's tree app reports every node as a "menu".
        visit = IvrVisit(node.node_id, node.name, node.node_type if g.v1 else "menu", t)
        run.visits.append(visit)
        g.emit(t, "ivr_node_entered", leg, {
            "node_id": node.node_id, "node_name": node.name, "node_type": visit.node_type,
            "app_id": app_id, "entry_time": t, "caller_name": leg.caller_name,
            "callee_name": leg.callee_name, "routing_target": node.node_id,
            "previous_node_id": previous, "extra": None})
        prompt = g.dur(4.0, 1.5, 12.0)
        if g.chance(0.035, f"ivr_abandon@{node.node_id}"):
            t += g.uni(0.5, prompt / US + 3.0)
            return _abandon(g, t, leg, run, visit)
        key = g.pick(node.weights, node.node_id)
        action, target = node.options[key]
        if key == "auto":
            t += prompt
        elif key == "timeout":
            t += prompt + 8 * US
        else:
            t += g.dur(2.5, 0.4, 20.0) + prompt // 2
            visit.digit = key
            g.emit(t, "dtmf", leg, {"digit": key, "leg_id": "caller", "extra": None})
            t += g.uni(0.02, 0.2)
        if action in ("invalid", "timeout"):
            retries += 1
            if retries >= MAX_RETRIES:
                action, target = "hangup", None
        visit.exited = t
        visit.result_value = key if visit.digit else ("timeout" if key == "timeout" else
                                                       ("completed" if g.v1 else "menu"))
        nxt = node if action in ("invalid", "timeout") else (
            app.nodes[target] if action == "menu" and target is not None else None)
        visit.next_node_id = nxt.node_id if nxt is not None else None
        g.emit(t, "ivr_node_exited", leg, {
            "node_id": node.node_id, "node_name": node.name,
            "result_value": visit.result_value, "duration_ms": (t - visit.entered) // 1000,
            "exit_time": t, "next_node_id": visit.next_node_id, "hangup_reason": None,
            "call_result": None, "extra": _ACTION_TYPE[action]})
        if nxt is not None:
            previous = node.node_id
            node = nxt
            t += g.uni(0.01, 0.15)
            continue
        final = {"queue": "transferred", "voicemail": "transferred", "jump_ivr": "transferred",
                 "hangup": "hangup"}[action]
        route = {"queue": f"queue:{target}", "voicemail": "voicemail",
                 "jump_ivr": f"ivr:{target}", "hangup": None}[action]
        _complete(g, t, leg, run, final, route)
        return t, action, target


def _abandon(g: Gen, t: int, leg: Leg, run: IvrRun, visit: IvrVisit) -> tuple[int, str, None]:
    visit.exited = t
    run.abandoned = True
    g.emit(t, "ivr_node_exited", leg, {
        "node_id": visit.node_id, "node_name": visit.node_name, "result_value": None,
        "duration_ms": (t - visit.entered) // 1000, "exit_time": t, "next_node_id": None,
        "hangup_reason": "caller" if g.v1 else "remote_hangup", "call_result": "hangup",
        "extra": _ABANDON_EXTRA})
    _complete(g, t, leg, run, "abandoned" if g.v1 else "remote_hangup", None)
    return t, "abandoned", None


def _complete(g: Gen, t: int, leg: Leg, run: IvrRun, final: str, route: str | None) -> None:
    run.completed = t
    run.final_result = final
    run.final_target = route
    g.emit(t, "ivr_flow_completed", leg, {
        "app_id": run.app_id, "total_nodes_traversed": len(run.visits),
        "total_duration_ms": (t - run.started) // 1000, "final_result": final,
        "completion_time": t, "final_routing_target": route, "extra": None})


def _run_steps(g: Gen, t: int, leg: Leg) -> tuple[int, str, str | None]:
    """A provider-driven step-mode IVR: one ``ivr_step_trace`` per provider round trip."""
    run = IvrRun(STEP_APP_ID, "step", t)
    leg.ivr_runs.append(run)
    g.v1_context(t, leg, app_id=STEP_APP_ID, routing_target=f"ivr:{STEP_APP_ID}")
    path = g.pick({"transfer": 80.0, "error": 10.0, "hangup": 10.0}, "step_path")
    steps: list[tuple[str, Any, str, dict[str, Any] | None, str, str | None]] = [
        ("session_start", None, "Prompt", {"prompt": "welcome_bot"}, "continue", None),
        ("audio_complete", None, "DtmfMenu", {"max_digits": 1, "timeout_ms": 8000}, "continue",
         None),
    ]
    outcome: str = "queue"
    target: str | None = "support"
    if path == "transfer":
        steps.append(("dtmf", {"digit": "1"}, "Transfer", {"target": "queue:support"}, "terminal",
                      "transfer_to_queue"))
    elif path == "error":
        steps.append(("dtmf", {"digit": "2"}, "Transfer", None, "error", "error"))
        target = "operator"
    else:
        steps.append(("hangup", None, "Hangup", None, "terminal", "user_hangup"))
        outcome, target = "abandoned", None
    for index, (trigger, detail, action, action_obj, kind, end) in enumerate(steps):
        took = g.uni(0.08, 0.9)
        start = t
        if trigger == "dtmf":
            t += g.dur(3.0, 0.8, 12.0)
            g.emit(t, "dtmf", leg, {"digit": detail["digit"], "leg_id": "caller", "extra": None})
            start = t
        elif trigger == "hangup":
            t += g.dur(4.0, 1.0, 15.0)
            start = t
        t = start + took
        if leg.app_at is None:
            leg.app_at = t
        waiting = action == "DtmfMenu"
        g.emit(t, "ivr_step_trace", leg, {
            "session_id": leg.call_id, "caller": leg.caller, "callee": leg.callee,
            "step_index": index, "trigger": {"type": trigger, "detail": detail},
            "step_event_type": trigger, "action_type": action,
            "action_json": json.dumps(action_obj, separators=(",", ":")) if action_obj else None,
            "result_kind": kind, "duration_ms": took // 1000,
            "error": "provider timeout after 3000ms" if kind == "error" else None,
            "step_id": f"step_{index}", "step_name": action.lower(), "step_start_time": start,
            "step_end_time": None if waiting else t,
            "extra": {"flow": "bot_v2", "attempt": 1} if index == 0 else None,
            "sip_headers": None, "end_reason": end, "end_detail": None})
    run.completed = t
    run.abandoned = outcome == "abandoned"
    return t, outcome, target
