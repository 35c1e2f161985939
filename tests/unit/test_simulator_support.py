"""Shared helpers for the simulator tests: cached runs and an independent recount.

The recount is a small ETL written from the definitions in ``connectors/simulator/truth.py``
using nothing but the emitted webhook bodies; the truth file must agree with it exactly.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from connectors.simulator.config import SimConfig
from connectors.simulator.engine import Simulation
from connectors.simulator.report import truth_lines

DTMF = set("0123456789*#")


@lru_cache(maxsize=32)
def simulate(dialect: str, calls: int, seed: int, cc_addon: bool = True,
             stop_after_batches: int | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(bodies, truth lines) of one in-process run; optionally stopped early."""
    sim = Simulation(SimConfig(dialect=dialect, seed=seed, calls=calls, cc_addon=cc_addon))
    bodies: list[str] = []
    for n, batch in enumerate(sim.body_batches()):
        bodies.extend(batch)
        if stop_after_batches is not None and n + 1 >= stop_after_batches:
            sim.stop()
    return tuple(bodies), tuple(truth_lines([sim]))


def truth_rows(lines: tuple[str, ...], kind: str) -> list[dict[str, Any]]:
    return [row for row in map(json.loads, lines) if row["kind"] == kind]


def micros(stamp: Any) -> int:
    """An envelope or payload instant as epoch µs (truncating nanoseconds)."""
    if isinstance(stamp, int):
        return stamp * 1_000_000
    text = stamp.replace("Z", "+00:00")
    head, _, tail = text.partition(".")
    if tail:
        digits = tail[:len(tail) - len(tail.lstrip("0123456789"))]
        zone = tail[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    moment = datetime.fromisoformat(text)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def iso(t: int | None) -> str | None:
    if t is None:
        return None
    moment = datetime.fromtimestamp(t // 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{t % 1_000_000:06d}Z"


def ms(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else (b - a) // 1000


def parsed(bodies: tuple[str, ...]) -> list[tuple[int, str, dict[str, Any], str]]:
    """(instant µs, event_type, flat event, envelope call_id) per body, in send order."""
    out = []
    for body in bodies:
        doc = json.loads(body)
        event = doc["event"]
        kind = doc["event_type"]
        if len(event) == 1 and isinstance(event.get(kind), dict):
            event = event[kind]
        out.append((micros(doc["timestamp"]), kind, event, doc["call_id"]))
    return out


def recount_calls(bodies: tuple[str, ...], dialect: str) -> dict[str, dict[str, Any]]:
    """analytics.calls rows recomputed from the bodies alone."""
    legs: dict[str, dict[str, Any]] = {}
    for t, kind, ev, _env in parsed(bodies):
        if kind in ("call_created", "call_incoming"):
            legs[ev["call_id"]] = {
                "created": t, "caller": ev["caller"], "callee": ev["callee"],
                "direction": ev.get("dial_direction") or ev.get("direction"),
                "trunk": ev.get("trunk"), "session": ev.get("root_call_id") or ev.get("session_id"),
                "ringing": None, "answers": {}, "ended": None, "end": None, "reason": None,
                "by": None, "sip": None, "holds": [], "transfers": 0, "joined": None,
                "queue": None, "connected": None, "left": None, "agent": None, "app": None,
                "in_app": False, "recs": 0, "open_recs": 0,
            }
            continue
        leg = legs.get(ev.get("call_id")) if isinstance(ev.get("call_id"), str) else None
        if leg is None:
            continue
        if dialect == "current":
            if ev.get("session_id") and kind != "ivr_step_trace":
                leg["session"] = ev["session_id"]
            if ev.get("trunk") and leg["trunk"] is None:
                leg["trunk"] = ev["trunk"]
        if kind == "call_ringing" and leg["ringing"] is None:
            leg["ringing"] = t
        elif kind in ("queue_agent_connected", "call_answered", "conference_joined"):
            leg["answers"].setdefault(kind, t)
            if kind == "queue_agent_connected":
                leg["connected"], leg["agent"] = t, ev["agent_id"]
        elif kind in ("call_hangup", "call_busy", "call_no_answer"):
            leg["ended"], leg["end"] = t, kind
            if kind == "call_hangup":
                leg["reason"], leg["by"], leg["sip"] = (ev.get("reason"), ev.get("hangup_by"),
                                                       ev.get("sip_status"))
        elif kind == "media_hold_started":
            leg["holds"].append([t, None])
        elif kind == "media_hold_stopped":
            leg["holds"][-1][1] = t
        elif kind == "call_transferred":
            leg["transfers"] += 1
        elif kind == "queue_joined":
            leg["joined"] = leg["joined"] if leg["joined"] is not None else t
            leg["queue"], leg["left"] = ev["queue_id"], None
        elif kind == "queue_left":
            leg["left"] = t
        elif kind == "ivr_node_entered" and leg["app"] is None:
            leg["app"] = ev["app_id"]
        elif kind == "record_started":
            leg["recs"] += 1
            leg["open_recs"] += 1
        elif kind == "record_stopped":
            if leg["open_recs"]:
                leg["open_recs"] -= 1
            else:
                leg["recs"] += 1
        if kind.startswith(("ivr_", "queue_")):
            leg["in_app"] = True
    rows = {}
    for call_id, leg in legs.items():
        answers = leg["answers"]
        answered = answers.get("queue_agent_connected", answers.get(
            "call_answered", answers.get("conference_joined")))
        ended = leg["ended"]
        for hold in leg["holds"]:
            if hold[1] is None and ended is not None:
                hold[1] = ended
        rows[call_id] = {
            "kind": "call", "call_id": call_id, "session_id": leg["session"],
            "direction": leg["direction"], "caller": leg["caller"], "callee": leg["callee"],
            "trunk": leg["trunk"], "created_at": iso(leg["created"]),
            "ringing_at": iso(leg["ringing"]), "answered_at": iso(answered),
            "ended_at": iso(ended),
            "ring_ms": ms(leg["ringing"], answered if answered is not None else ended),
            "talk_ms": ms(answered, ended),
            "hold_ms": sum(h[1] - h[0] for h in leg["holds"] if h[1] is not None) // 1000,
            "total_ms": ms(leg["created"], ended), "outcome": _outcome(leg, answered),
            "hangup_reason": leg["reason"], "hangup_by": leg["by"], "sip_status": leg["sip"],
            "transfer_count": leg["transfers"], "hold_count": len(leg["holds"]),
            "queue_id": leg["queue"],
            "queue_wait_ms": ms(leg["joined"], leg["connected"] if leg["connected"] is not None
                                else leg["left"]),
            "agent_id": leg["agent"], "ivr_app_id": leg["app"],
            "recording_count": leg["recs"], "dialect": dialect, "complete": ended is not None,
        }
    return rows


def _outcome(leg: dict[str, Any], answered: int | None) -> str:
    if leg["ended"] is None:
        return "in_progress"
    if answered is not None:
        return "answered"
    if leg["end"] == "call_busy":
        return "busy"
    if leg["end"] == "call_no_answer":
        return "no_answer"
    reason = leg["reason"]
    if reason == "abandoned" or (reason in ("caller", "system") and leg["in_app"]):
        return "abandoned"
    if reason in ("caller", "canceled"):
        return "canceled"
    if reason in ("noAnswer", "autohangup"):
        return "no_answer"
    if reason == "rejected":
        return "busy" if leg["sip"] in (486, 600) else "rejected"
    return "failed"


def recount_ivr(bodies: tuple[str, ...]) -> list[dict[str, Any]]:
    """analytics.ivr_paths rows (menu IVRs) recomputed from the bodies."""
    runs: list[dict[str, Any]] = []
    current: dict[str, dict[str, Any]] = {}
    for _t, kind, ev, _env in parsed(bodies):
        call_id = ev.get("call_id")
        if kind == "ivr_node_entered":
            run = current.get(call_id)
            if run is None or run["done"]:
                run = {"call_id": call_id, "app_id": ev["app_id"], "path": [], "digits": "",
                       "started": micros(ev["entry_time"]), "done": False, "ended": None,
                       "total": None, "final": None, "target": None, "abandoned": False}
                current[call_id] = run
                runs.append(run)
            run["path"].append(ev["node_id"])
        elif kind == "ivr_node_exited":
            run = current[call_id]
            value = ev.get("result_value")
            if isinstance(value, str) and len(value) == 1 and value in DTMF:
                run["digits"] += value
            if ev.get("call_result") == "hangup":
                run["abandoned"] = True
        elif kind == "ivr_flow_completed":
            run = current[call_id]
            run.update(done=True, ended=micros(ev["completion_time"]),
                       total=ev["total_duration_ms"], final=ev["final_result"],
                       target=ev.get("final_routing_target"))
    return [{
        "call_id": r["call_id"], "app_id": r["app_id"], "path": r["path"],
        "digits": r["digits"], "node_count": len(r["path"]), "started_at": iso(r["started"]),
        "ended_at": iso(r["ended"]), "total_ms": r["total"], "final_result": r["final"],
        "final_routing_target": r["target"],
        "exit_node_id": r["path"][-1] if r["done"] else None,
        "abandoned": r["abandoned"] and r["done"],
    } for r in runs]


def recount_recordings(bodies: tuple[str, ...], dialect: str) -> dict[str, dict[str, Any]]:
    """analytics.recordings rows (one recording per leg here) recomputed from the bodies."""
    recs: dict[str, dict[str, Any]] = {}
    uuids: dict[str, str] = {}

    def rec(call_id: str) -> dict[str, Any]:
        return recs.setdefault(call_id, {
            "call_id": call_id, "recording_id": uuids.get(call_id, call_id), "filename": None,
            "file_size": None, "duration_secs": None, "download_url": None,
            "started_at": None, "stopped_at": None, "uploaded_at": None, "status": "recording",
            "agent_id": None, "call_type": None})

    for t, kind, ev, _env in parsed(bodies):
        call_id = ev.get("call_id")
        if kind == "call_incoming":
            uuids[call_id] = ev["uuid"]
        elif kind == "record_started":
            rec(call_id)["started_at"] = iso(t)
        elif kind == "record_failed":
            rec(call_id)["status"] = "failed"
        elif kind == "record_stopped":
            r = rec(call_id)
            r.update(filename=ev["filename"], file_size=ev["file_size"],
                     duration_secs=ev["duration_secs"], stopped_at=iso(t), status="stopped")
            if dialect == "v1.0":
                r.update(recording_id=ev["unique_id"], download_url=ev.get("download_url"),
                         agent_id=ev.get("agent_id"), call_type=ev.get("call_type"))
        elif kind == "recording_metadata_available":
            r, meta = rec(call_id), ev["metadata"]
            r["status"] = "available"
            uploaded = micros(meta["upload_time"])
            r["uploaded_at"] = iso(uploaded)
            if dialect == "current":
                r.update(filename=meta["filename"], download_url=meta.get("download_url"),
                         agent_id=meta.get("agent_id"), call_type=meta["call_type"])
    return recs


def recount_queue_calls(bodies: tuple[str, ...]) -> list[dict[str, Any]]:
    """Queue stays recomputed from the bodies (windows by send order, not time)."""
    stays: list[dict[str, Any]] = []
    open_stay: dict[str, dict[str, Any]] = {}
    for t, kind, ev, _env in parsed(bodies):
        call_id = ev.get("call_id")
        if kind == "queue_joined":
            stay = {"call_id": call_id, "queue_id": ev["queue_id"], "joined": t, "left": None,
                    "result": "waiting", "agent_id": None, "offers": 0, "timeout": False}
            open_stay[call_id] = stay
            stays.append(stay)
            continue
        stay = open_stay.get(call_id) if isinstance(call_id, str) else None
        if stay is None:
            continue
        if kind == "call_ringing" and stay["left"] is None:
            stay["offers"] += 1
        elif kind == "queue_agent_connected":
            stay["agent_id"] = ev["agent_id"]
        elif kind == "queue_wait_timeout":
            stay["timeout"] = True
        elif kind == "queue_left":
            stay["left"] = t
            reason = ev.get("reason")
            stay["result"] = "timeout" if stay["timeout"] else reason
        elif kind == "queue_fallback_executed":
            if not stay["timeout"]:
                stay["result"] = "no_agent"
            if stay["left"] is None:
                stay["left"] = t
        elif kind == "call_hangup":
            del open_stay[call_id]
    return [{"call_id": s["call_id"], "queue_id": s["queue_id"], "joined_at": iso(s["joined"]),
             "left_at": iso(s["left"]), "wait_ms": ms(s["joined"], s["left"]),
             "result": s["result"], "agent_id": s["agent_id"], "offer_count": s["offers"]}
            for s in stays]


def recount_agent_states(bodies: tuple[str, ...]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    last: dict[str, dict[str, Any]] = {}
    for t, kind, ev, _env in parsed(bodies):
        if kind != "agent_state_changed":
            continue
        agent = ev["agent_id"]
        previous = last.get(agent)
        if previous is not None:
            assert previous["state"] == ev["from_status"], (agent, previous, ev)
            previous["ended_at"] = iso(t)
            previous["duration_ms"] = ms(micros(previous["started_at"]), t)
        row = {"agent_id": agent, "state": ev["to_status"], "started_at": iso(t),
               "ended_at": None, "duration_ms": None, "call_id": ev.get("call_id"),
               "reason_code": ev.get("reason_code")}
        rows.append(row)
        last[agent] = row
    return rows


def by_type(bodies: tuple[str, ...]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for body in bodies:
        counts[json.loads(body)["event_type"]] += 1
    return dict(counts)
