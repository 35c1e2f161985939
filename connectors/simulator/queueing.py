"""A call's stay in a queue: offers to agents, retries, abandon, timeout, overflow, fallback."""

from __future__ import annotations

from connectors.simulator import agents as ag
from connectors.simulator import lifecycle as lc
from connectors.simulator.builder import Gen
from connectors.simulator.records import Agent, Leg, QueueVisit
from connectors.simulator.timefmt import US
from connectors.simulator.topology import Queue

RING_TIMEOUT_US = 15 * US


Outcome = tuple[int, str, Agent | None]


def run_queue(g: Gen, t: int, leg: Leg, queue_id: str, give_up: int) -> Outcome:
    """Queue the call until an agent answers or it leaves; returns (instant, result, agent).

    Results: ``connected``, ``abandoned`` (caller hung up), ``overflow`` (1.0: moved to
    ``Queue.overflow_to``), ``timeout`` and ``no_agent`` (the queue's fallback runs next).
    """
    q = g.topo.queues[queue_id]
    visit = QueueVisit(queue_id, t)
    leg.queue_visits.append(visit)
    if leg.app_at is None:
        leg.app_at = t
    g.v1_context(t, leg, routing_target=f"queue:{queue_id}")
    g.emit(t, "queue_joined", leg, {"queue_id": queue_id})
    trace = leg.call_id if not g.v1 else f"acd-{g.hex(12)}"
    position = 1 + g.below(4)
    if g.v1:
        g.emit(t + 1000, "queue_position_changed", leg,
               {"queue_id": queue_id, "position": position})
    if not q.agents:
        return _no_agent(g, t + g.uni(0.05, 0.3), leg, q, visit, trace)
    deadlines = {"abandoned": give_up, "timeout": t + q.max_wait_us}
    if g.v1 and q.overflow_to:
        deadlines["overflow"] = t + q.overflow_after_us
    alert_at = t + q.alert_after_us
    now = t + g.uni(0.05, 0.4)
    attempt = 0
    avoid: Agent | None = None
    while True:
        agent = ag.earliest_agent(g, q.agents, avoid)
        offer = max(now, agent.free_at)
        _candidates(g, now, leg, q, trace)
        if attempt == 0 and offer > now + US and g.addon:
            g.emit(now + 500, "skill_group_call_queued", leg, {
                "skill_group_id": queue_id, "reason": "all_busy", "waiting_count": position})
        deadline_kind = min(deadlines, key=lambda k: deadlines[k])
        deadline = deadlines[deadline_kind]
        if min(offer, deadline) > alert_at:
            _alert(g, alert_at, leg, queue_id)
            alert_at = 1 << 62
        if g.v1:
            position = _positions(g, now, min(offer, deadline), leg, queue_id, position)
        if offer >= deadline:
            return _leave(g, deadline, deadline_kind, leg, q, visit, trace, None)
        attempt += 1
        visit.offers.append(offer)
        ag.ring_agent(g, offer, agent, leg)
        if g.addon:
            g.emit(offer, "skill_group_agent_assigned", leg, {
                "skill_group_id": queue_id, "agent_id": agent.agent_id, "attempt": attempt,
                "dispatch_reason": "skill_match"})
        if g.v1:
            g.emit(offer, "queue_agent_offered", leg, _agent(queue_id, agent))
        ringing = offer + g.uni(0.03, 0.12)
        lc.ring(g, ringing, leg)
        if g.addon:
            g.emit(ringing + 500, "queue_agent_offered", leg, _agent(queue_id, agent))
            g.emit(ringing + 900, "cc_ringing", leg, {
                "agent_id": agent.agent_id, "agent_name": agent.name, "queue_id": queue_id})
        if g.v1:
            g.emit(ringing, "queue_agent_ringing", leg,
                   {**_agent(queue_id, agent), "trace_id": trace})
            ag.dn(g, ringing, agent, "RINGING", leg, vq_name=queue_id, skill_group=queue_id)
        response = g.pick({"answer": 80.0, "no_answer": 14.0, "reject": 6.0 if g.v1 else 0.0},
                          "agent_response")
        if response == "answer":
            done = ringing + g.dur(5.0, 1.5, 14.0)
        elif response == "no_answer":
            done = ringing + RING_TIMEOUT_US
        else:
            done = ringing + g.uni(1.5, 5.0)
        if deadline < done:
            ag.transition(g, deadline, agent, "idle", None, "CANCELLED")
            if deadline_kind == "abandoned":
                ag.dn(g, deadline, agent, "ABANDONED", leg, vq_name=queue_id)
            agent.free_at = deadline + g.uni(0.5, 2.0)
            return _leave(g, deadline, deadline_kind, leg, q, visit, trace, None)
        if response == "answer":
            return _connect(g, done, leg, q, visit, agent)
        ag.transition(g, done, agent, "idle", None,
                      "NO_ANSWER" if response == "no_answer" else "REJECTED")
        agent.free_at = done + g.uni(1.0, 4.0)
        kind = "queue_agent_no_answer" if response == "no_answer" else "queue_agent_rejected"
        if g.v1 or g.addon:
            g.emit(done, kind, leg,
                   {**_agent(queue_id, agent), "attempt": attempt, "trace_id": trace})
        avoid = agent
        now = done + g.uni(0.2, 1.0)


def _agent(queue_id: str, agent: Agent) -> dict[str, str]:
    return {"queue_id": queue_id, "agent_id": agent.agent_id}


def _candidates(g: Gen, t: int, leg: Leg, q: Queue, trace: str) -> None:
    ids = [a.agent_id for a in q.agents if a.free_at <= t] or [a.agent_id for a in q.agents[:3]]
    if g.v1:
        g.emit(t, "queue_candidates_found", leg, {
            "queue_id": q.queue_id, "candidates": ids, "trace_id": trace})
    if g.addon:
        g.emit(t, "skill_group_candidates_found", leg, {
            "skill_group_id": q.queue_id, "candidates": ids})


def _positions(g: Gen, t: int, until: int, leg: Leg, queue_id: str, position: int) -> int:
    """1.0 reports the caller's place in line as it moves up."""
    t += g.uni(20.0, 40.0)
    while t < until and position > 1:
        position -= 1
        g.emit(t, "queue_position_changed", leg, {"queue_id": queue_id, "position": position})
        t += g.uni(20.0, 40.0)
    return position


def _alert(g: Gen, t: int, leg: Leg, queue_id: str) -> None:
    if g.agent_events:
        waited = g.topo.queues[queue_id].alert_after_us // US
        g.emit(t, "queue_alert", None, {
            "queue_id": queue_id, "alert_type": "long_wait",
            "message": f"a caller has waited {waited}s in queue {queue_id}"})


def _connect(g: Gen, t: int, leg: Leg, q: Queue, visit: QueueVisit, agent: Agent) -> Outcome:
    """The agent answered: this is the call's answer time (no ``call_answered`` is sent)."""
    ag.connect_agent(g, t, agent, leg)
    reported = agent.agent_id if (g.v1 or g.addon) else agent.uri
    g.emit(t, "queue_agent_connected", leg, {"queue_id": q.queue_id, "agent_id": reported})
    g.emit(t, "queue_left", leg, {"queue_id": q.queue_id, "reason": "connected"})
    if g.addon:
        g.emit(t, "cc_answered", leg, {
            "agent_id": agent.agent_id, "agent_name": agent.name, "queue_id": q.queue_id})
    ag.dn(g, t, agent, "ESTABLISHED", leg, vq_name=q.queue_id, skill_group=q.queue_id)
    g.v1_context(t, leg, agent_id=agent.agent_id, agent_name=agent.name)
    visit.connected = visit.left = t
    visit.result = "connected"
    visit.agent_id = reported
    leg.answered = t
    leg.agent_id = reported
    return t, "connected", agent


def _leave(g: Gen, t: int, kind: str, leg: Leg, q: Queue, visit: QueueVisit, trace: str,
           agent: Agent | None) -> Outcome:
    visit.left = t
    visit.result = kind
    qid = q.queue_id
    if kind == "abandoned":
        g.emit(t, "queue_left", leg, {"queue_id": qid, "reason": "abandoned"})
        if g.addon:
            g.emit(t, "skill_group_call_abandoned", leg, {
                "skill_group_id": qid, "wait_secs": (t - visit.joined) // US, "waiting_count": 1})
    elif kind == "overflow":
        assert q.overflow_to is not None
        g.emit(t, "queue_overflowed", leg, {
            "original_queue_id": qid, "overflow_queue_id": q.overflow_to,
            "reason": "wait_threshold"})
        g.emit(t, "queue_left", leg, {"queue_id": qid, "reason": "overflow"})
    else:
        g.emit(t, "queue_wait_timeout", leg, {"queue_id": qid})
        _fallback(g, t, leg, q, trace, "timeout")
    return t, kind, agent


def _no_agent(g: Gen, t: int, leg: Leg, q: Queue, visit: QueueVisit, trace: str) -> Outcome:
    visit.left = t
    visit.result = "no_agent"
    if g.addon:
        g.emit(t, "skill_group_no_agent", leg, {
            "skill_group_id": q.queue_id, "reason": "no_candidates"})
    _fallback(g, t, leg, q, trace, "no_agent")
    return t, "no_agent", None


def _fallback(g: Gen, t: int, leg: Leg, q: Queue, trace: str, why: str) -> None:
    qid = q.queue_id
    if g.v1:
        g.emit(t, "queue_fallback_executed", leg, {
            "queue_id": qid, "action": q.fallback, "reason": why, "trace_id": trace})
        g.emit(t, "queue_left", leg, {"queue_id": qid, "reason": why})
        if q.fallback == "voicemail":
            g.emit(t, "queue_voicemail_redirected", leg, {"queue_id": qid, "reason": why})
        return
    # Today's queue app reports "abandoned" before the fallback runs, whatever the cause.
    g.emit(t, "queue_left", leg, {"queue_id": qid, "reason": "abandoned"})
    g.emit(t, "queue_fallback_executed", leg, {
        "queue_id": qid, "action": q.fallback, "reason": "no_agent", "trace_id": trace})
    if g.addon:
        g.emit(t, "skill_group_service_unavailable", leg, {
            "skill_group_id": qid, "reason": "timeout" if why == "timeout" else "no_agent"})
