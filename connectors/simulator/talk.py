"""The conversation after an answer: recording, holds, streams, transcripts, supervisors,
transfers, and the hangup that ends it."""

from __future__ import annotations

from connectors.simulator import agents as ag
from connectors.simulator import lifecycle as lc
from connectors.simulator.builder import Gen, sip_uri
from connectors.simulator.records import Agent, Leg, Recording
from connectors.simulator.timefmt import US
from connectors.simulator.transfers import transfer

PHRASES = (
    "hello thanks for calling", "I have a question about my invoice", "let me check that",
    "could you spell the name", "one moment please", "the order number is four two seven",
    "is there anything else", "thank you goodbye",
)


def converse(
    g: Gen, t: int, leg: Leg, *, agent: Agent | None = None, queue_id: str | None = None,
    rec: Recording | None = None, features: bool = True, median_s: float = 150.0,
) -> int:
    """Talk from ``t`` until this leg ends; returns the hangup (or transfer) instant."""
    length = g.dur(median_s, 8.0, 1800.0)
    end = t + length
    agent_leg = g.uuid() if agent is not None else None
    stream = False
    if features and agent is not None and g.v1 and rec is None and g.chance(0.7, "record"):
        rec = lc.start_recording(g, t + g.uni(0.3, 2.0), leg, auto=False)
        if g.chance(0.04, "record_fail"):
            lc.fail_recording(g, rec.started + g.uni(0.5, 8.0), rec, "disk full: /var/spool/rec")
            rec = None
    if features and rec is not None and g.chance(0.12, "record_pause"):
        paused = rec.started + max(US, length // 6)
        lc.pause_recording(g, paused, rec)
        lc.resume_recording(g, paused + max(US // 2, length // 10), rec)
    if features and g.v1 and agent is not None and g.chance(0.1, "media_stream"):
        stream = True
        g.emit(t + g.uni(0.5, 2.0), "media_stream_started", leg)
    if features and not g.v1 and g.chance(0.2, "transcript"):
        _transcript(g, t + g.uni(0.5, 1.5), t + length * 3 // 4, leg)
    if features and g.chance(0.25, "hold"):
        _holds(g, t + length // 5, length // 5, leg, agent, queue_id)
    takeover: int | None = None
    sup: Leg | None = None
    if features and agent is not None and g.chance(0.1, "supervisor"):
        sup, takeover = _supervise(g, t + length * 35 // 100, t + length * 3 // 4, leg, agent_leg)
        if takeover is not None:
            assert agent is not None
            _release(g, takeover, leg, agent, queue_id, t, by_agent=True)
            agent = None
    if features and g.chance(0.12, "transfer"):
        ended_at = transfer(g, t + length * 4 // 5, leg, converse)
        if ended_at is not None:
            if stream:
                g.emit(ended_at - 1000, "media_stream_stopped", leg)
            if agent is not None:
                _release(g, ended_at, leg, agent, queue_id, t, by_agent=True)
            if sup is not None and takeover is not None:
                lc.hangup(g, ended_at + g.uni(0.5, 2.0), sup, "callee", "callee")
            return ended_at
        end = max(end, leg.ended or 0, _latest(g, leg) + 5 * US)
    if stream:
        g.emit(end - g.uni(0.1, 0.5), "media_stream_stopped", leg)
    by_agent = g.chance(0.45, "agent_hangup")
    if g.v1:
        reason, by = ("callee", "callee") if by_agent else ("caller", "caller")
    else:
        reason = "callee" if by_agent else "caller"
        by = ("agent" if agent is not None or leg.queue_visits else "callee") if by_agent \
            else "caller"
    cut = g.pick({"": 95.0, "rtpTimeout": 2.0, "autohangup": 3.0}, "call_cut")
    if cut:  # media died, or the maximum call length was reached: nobody hung up
        reason, by = cut, "unknown" if cut == "rtpTimeout" else "system"
        by_agent = False
    lc.hangup(g, end, leg, reason, by)
    if agent is not None:
        _release(g, end, leg, agent, queue_id, t, by_agent=by_agent)
    if sup is not None and takeover is not None:
        lc.hangup(g, end + g.uni(0.3, 1.5), sup, "callee", "callee")
    return end


def _latest(g: Gen, leg: Leg) -> int:
    return max((f[0] for f in g.out if f[3] is leg), default=leg.created)


def _release(g: Gen, t: int, leg: Leg, agent: Agent, queue_id: str | None, since: int,
             *, by_agent: bool) -> None:
    if g.addon:
        g.emit(t, "cc_hangup", leg, {
            "agent_id": agent.agent_id, "agent_name": agent.name, "queue_id": queue_id,
            "reason": "callee" if by_agent else "caller",
            "hangup_by": "agent" if by_agent else "caller", "talk_secs": (t - since) // US,
            "duration_secs": (t - leg.created) // US})
    ag.release_agent(g, t, agent, leg, agent_hung_up=by_agent)


def _holds(g: Gen, t: int, span: int, leg: Leg, agent: Agent | None, queue_id: str | None) -> None:
    count = 2 if g.chance(0.3, "second_hold") else 1
    for _ in range(count):
        length = min(g.dur(30.0, 4.0, 180.0), span // (2 * count))
        lc.hold(g, t, leg)
        if agent is not None:
            if g.addon:
                g.emit(t, "cc_held", leg, {"agent_id": agent.agent_id, "agent_name": agent.name,
                                           "queue_id": queue_id})
            ag.dn(g, t, agent, "HELD", leg)
        t += length
        lc.unhold(g, t, leg)
        if agent is not None:
            if g.addon:
                g.emit(t, "cc_unheld", leg, {"agent_id": agent.agent_id,
                                             "agent_name": agent.name, "queue_id": queue_id})
            ag.dn(g, t, agent, "RETRIEVED", leg)
        t += span // (2 * count)


def _transcript(g: Gen, t: int, until: int, leg: Leg) -> None:
    g.emit(t, "transcript_started", leg, {"sides": ["caller", "callee"], "provider": "deepgram"})
    offset = 0
    span = max(US, until - t)
    for i in range(2 + g.below(5)):
        side = ("caller", "callee")[i % 2]
        words = PHRASES[g.below(len(PHRASES))]
        offset += g.uni(0.3, 3.0)
        length = g.uni(0.8, 4.0)
        if offset + length >= span:
            break
        start_ms, end_ms = offset // 1000, (offset + length) // 1000
        for partial in (True, False):
            at = t + offset + (length // 2 if partial else length) + g.uni(0.05, 0.3)
            text = " ".join(words.split()[:2]) if partial else words
            g.emit(at, "transcript_segment", leg, {
                "side": side, "text": text, "partial": partial, "start_ms": start_ms,
                "end_ms": end_ms, "lang": "en-US" if i % 3 else None})
        offset += length
    if g.chance(0.1, "transcript_error"):
        g.emit(t + span // 2, "transcript_error", leg, {
            "side": "callee", "error": "provider connection reset"})
    g.emit(until, "transcript_ended", leg, {"reason": "hangup"})


def _supervise(g: Gen, t: int, stop: int, target: Leg,
               agent_leg: str | None) -> tuple[Leg, int | None]:
    """A supervisor's own call monitors the target; 2-3 deliveries per event today."""
    ext = g.topo.supervisors[g.below(len(g.topo.supervisors))]
    sup = g.new_leg(t, direction="outbound", caller="sip:rwi@pbx.local", callee=sip_uri(ext),
                    uas=False)
    lc.start(g, t, sup)
    lc.ring(g, t + g.uni(0.1, 0.5), sup)
    at = t + g.dur(3.0, 1.0, 9.0)
    lc.answer(g, at, sup)
    pair = {"supervisor_call_id": sup.call_id, "target_call_id": target.call_id}
    both = [sup.call_id, target.call_id]
    three = [*both, agent_leg] if agent_leg else both
    if g.v1:
        g.emit(at, "call_ownership_changed", target, {"session_id": g.ws_session, "mode": "listen"})
    g.emit(at + 1000, "supervisor_listen_started", target, {**pair, "_routes": both})
    mode = g.pick({"listen": 55.0, "whisper": 18.0, "barge": 17.0, "takeover": 10.0}, "sup_mode")
    switch = at + max(US, (stop - at) // 3)
    if mode == "takeover":
        g.emit(switch, "supervisor_takeover_started", target, {**pair, "_routes": both})
        return sup, switch
    if mode != "listen":
        if g.v1:
            g.emit(switch, "call_ownership_changed", target, {"session_id": g.ws_session,
                                                               "mode": mode})
        g.emit(switch + 1000, f"supervisor_{mode}_started", target, {**pair, "_routes": three})
    stop = max(stop, switch + US)
    g.emit(stop, "supervisor_mode_stopped", target,
           {**pair, "_routes": three if mode != "listen" else both})
    lc.hangup(g, stop + g.uni(0.3, 2.0), sup, "callee", "callee")
    return sup, None
