"""RWI-driven outbound calls: originates, agent-first click-to-call bridges and (1.0)
parallel originates."""

from __future__ import annotations

from connectors.simulator import agents as ag
from connectors.simulator import lifecycle as lc
from connectors.simulator.builder import Gen
from connectors.simulator.records import Leg, Recording
from connectors.simulator.talk import converse
from connectors.simulator.timefmt import US

RWI_CALLER = "sip:rwi@pbx.local"


def _dial(g: Gen, t: int, callee: str, session_of: Leg | None = None) -> Leg:
    leg = g.new_leg(t, direction="outbound", caller=RWI_CALLER, callee=callee, uas=False,
                    session_of=session_of, context="outbound")
    if g.v1:
        leg.trunk = "carrier-a" if callee.endswith("@carrier-a") else None
        g.set_context(leg)
    lc.start(g, t, leg)
    return leg


def outbound(g: Gen, t: int) -> None:
    """``call.originate`` to a customer, then media, DTMF and SIP messaging on the call."""
    leg = _dial(g, t, f"sip:{g.phone()}@carrier-a")
    if g.v1 and g.chance(0.2, "ownership"):
        g.emit(t + 500, "call_ownership_changed", leg, {"session_id": g.ws_session,
                                                         "mode": "control"})
    record = g.chance(0.35, "originate_record")
    branch = g.pick({"answer": 62.0, "busy": 10.0, "no_answer": 13.0, "fail": 7.0,
                     "early_hangup": 6.0, "no_balance": 0.0 if g.v1 else 1.0,
                     "machine": 0.0 if g.v1 else 1.5}, "originate")
    if branch == "no_balance":
        lc.hangup(g, t + g.uni(0.2, 1.5), leg, "noBalance", "system", 402)
        return
    if branch == "fail":
        status = (404, 503)[g.below(2)]
        reason = "originate_failed" if not g.v1 else ("failed" if status == 404 else
                                                      "serverUnavailable")
        lc.hangup(g, t + g.uni(0.2, 3.0), leg, reason, None if g.v1 else "system", status)
        return
    if branch == "busy":
        lc.end_unanswered(g, t + g.uni(0.8, 4.0), leg, "busy")
        return
    progress = t + g.uni(0.4, 3.0)
    early = g.chance(0.25, "early_media")
    if early:
        g.emit(progress, "call_early_media", leg)
    else:
        lc.ring(g, progress, leg)
    rec: Recording | None = None
    if record and early:
        rec = lc.start_recording(g, progress + 1000, leg, auto=False)
    if branch == "no_answer":
        lc.end_unanswered(g, t + 60 * US, leg, "no_answer")
        return
    answered = progress + g.dur(7.0, 1.0, 40.0)
    if branch == "early_hangup":
        lc.hangup(g, answered, leg, "canceled", "caller", 487)
        return
    lc.answer(g, answered, leg)
    if branch == "machine":  # answering-machine detection drops the call
        lc.hangup(g, answered + g.dur(3.0, 1.0, 8.0), leg, "answerMachine", "system")
        return
    if record and rec is None:
        rec = lc.start_recording(g, answered + 1000, leg, auto=False)
    now = _media(g, answered + g.uni(0.3, 1.5), leg)
    converse(g, now, leg, rec=rec, median_s=90.0)


def _media(g: Gen, t: int, leg: Leg) -> int:
    """Prompts, DTMF collection, SIP MESSAGE/NOTIFY echoes and 1.0 session resumes."""
    if g.chance(0.5, "play"):
        track = f"track-{g.hex(8)}"
        g.emit(t, "media_play_started", leg, {"leg_id": None, "track_id": track})
        t += g.dur(6.0, 1.0, 30.0)
        interrupted = g.chance(0.2, "play_interrupted")
        g.emit(t, "media_play_finished", leg, {"leg_id": None, "track_id": track,
                                               "interrupted": interrupted})
    if g.chance(0.3, "collect"):
        t += g.uni(0.1, 0.5)
        if g.chance(0.2, "collect_timeout"):
            t += 10 * US
            g.emit(t, "dtmf_collection_timeout", leg, {"leg_id": "callee"})
        else:
            digits = "".join(str(g.below(10)) for _ in range(1 + g.below(6)))
            for digit in digits:
                t += g.uni(0.3, 1.5)
                if g.v1:
                    g.emit(t, "dtmf", leg, {"digit": digit, "leg_id": "callee", "extra": None})
            t += g.uni(0.05, 0.3)
            g.emit(t, "dtmf_collected", leg, {"leg_id": "callee", "digits": digits})
    if g.chance(0.12, "sip_message"):
        t += g.uni(0.5, 3.0)
        g.emit(t, "sip_message_received", leg, {
            "content_type": "text/plain", "body": f"order {g.below(10**6):06d} confirmed"})
    if g.chance(0.1, "sip_notify"):
        t += g.uni(0.5, 3.0)
        g.emit(t, "sip_notify_received", leg, {
            "event": "talk", "content_type": "application/simple-message-summary",
            "body": "Messages-Waiting: no"})
    if g.v1 and g.chance(0.04, "session_resumed"):
        t += g.uni(0.5, 3.0)
        g.emit(t, "session_resumed", None, {"session_id": g.ws_session,
                                           "behind": 1 + g.below(20)})
    return t


def click_to_call(g: Gen, t: int) -> None:
    """Agent first: ring the agent's phone, then the customer with ringback, then bridge."""
    agents = g.topo.agents
    agent = ag.earliest_agent(g, agents)
    t = max(t, agent.free_at)
    a = _dial(g, t, agent.uri)
    ag.ring_agent(g, t, agent, a)
    lc.ring(g, t + g.uni(0.05, 0.3), a)
    ag.dn(g, t + 100_000, agent, "RINGING", a)
    answered = t + g.dur(3.0, 0.8, 10.0)
    lc.answer(g, answered, a)
    ag.connect_agent(g, answered, agent, a)
    ag.dn(g, answered, agent, "ESTABLISHED", a)
    b = _dial(g, answered + g.uni(0.2, 1.0), f"sip:{g.phone()}@carrier-a",
              session_of=a if g.v1 else None)
    ag.dn(g, b.created, agent, "DIALING", b)
    ringing = b.created + g.uni(0.5, 3.0)
    lc.ring(g, ringing, b)
    pair = {"source": b.call_id, "target": a.call_id}
    g.emit(ringing + 1000, "media_ringback_passthrough_started", b,
           {**pair, "_routes": [a.call_id, b.call_id]})
    branch = g.pick({"answer": 72.0, "busy": 12.0, "no_answer": 16.0}, "bridge")
    if branch != "answer":
        end = ringing + (g.uni(0.5, 3.0) if branch == "busy" else 45 * US)
        if g.v1:
            g.emit(end, "media_ringback_passthrough_stopped", b, pair)
        lc.end_unanswered(g, end, b, branch)
        done = end + g.uni(0.5, 2.0)
        lc.hangup(g, done, a, "caller", "caller")
        ag.release_agent(g, done, agent, a, agent_hung_up=True)
        return
    connected = ringing + g.dur(7.0, 1.0, 30.0)
    if g.v1:
        g.emit(connected, "media_ringback_passthrough_stopped", b, pair)
    lc.answer(g, connected, b)
    bridged = connected + g.uni(0.02, 0.2)
    g.emit(bridged, "call_bridged", None, {
        "leg_a": a.call_id, "leg_b": b.call_id, "_routes": [a.call_id, b.call_id]})
    end = converse(g, bridged, b, median_s=150.0)
    g.emit(end + 500, "call_unbridged", a)
    done = end + g.uni(0.1, 1.0)
    lc.hangup(g, done, a, "caller", "caller")
    ag.release_agent(g, done, agent, a, agent_hung_up=b.hangup_by == "caller")


def parallel_originate(g: Gen, t: int) -> None:
    """1.0 only: ring N destinations at once; the first to answer wins, the rest are cancelled."""
    op = f"op-{g.hex(12)}"
    count = 2 + g.below(3)
    g.emit(t, "parallel_originate_started", None, {"operation_id": op, "leg_count": count})
    legs = []
    for i in range(count):
        dest = f"sip:{g.phone()}@carrier-a"
        leg = _dial(g, t + 1000 * (i + 1), dest)
        legs.append((leg, dest))
        ring = leg.created + g.uni(0.5, 4.0)
        lc.ring(g, ring, leg)
        g.emit(ring, "parallel_originate_leg_ringing", leg, {"operation_id": op,
                                                              "destination": dest})
    if g.chance(0.2, "parallel_fail"):
        end = t + 45 * US
        for leg, _dest in legs:
            lc.end_unanswered(g, end, leg, "no_answer")
        g.emit(end + 1000, "parallel_originate_failed", None, {
            "operation_id": op, "reason": "all legs failed: no answer"})
        return
    win, win_dest = legs[g.below(count)]
    answered = max(leg.ringing or 0 for leg, _ in legs) + g.dur(5.0, 0.5, 25.0)
    g.emit(answered, "parallel_originate_winner", win, {"operation_id": op,
                                                        "destination": win_dest})
    lc.answer(g, answered, win)
    for leg, dest in legs:
        if leg is not win:
            g.emit(answered + 2000, "parallel_originate_leg_cancelled", leg, {
                "operation_id": op, "destination": dest, "reason": "another leg answered"})
            lc.hangup(g, answered + 3000, leg, "canceled", None, 487)
    g.emit(answered + 4000, "parallel_originate_completed", win, {
        "operation_id": op, "winning_call_id": win.call_id})
    converse(g, answered + 5000, win, median_s=120.0)
