"""Conferences: RWI-managed rooms (members, mute, consult and merge, seat replace, end)
and today's dial-in rooms."""

from __future__ import annotations

from connectors.simulator import agents as ag
from connectors.simulator import lifecycle as lc
from connectors.simulator.builder import Gen, sip_uri
from connectors.simulator.flows_outbound import _dial
from connectors.simulator.records import Agent, Leg
from connectors.simulator.timefmt import US
from connectors.simulator.topology import TRUNKS


def conference(g: Gen, t: int) -> None:
    """An agent hosts a room, dials members in, and runs it to the end."""
    agent = ag.earliest_agent(g, g.topo.agents)
    t = max(t, agent.free_at)
    host = _dial(g, t, agent.uri)
    ag.ring_agent(g, t, agent, host)
    lc.ring(g, t + g.uni(0.05, 0.3), host)
    now = t + g.dur(3.0, 0.8, 8.0)
    lc.answer(g, now, host)
    ag.connect_agent(g, now, agent, host)
    ag.dn(g, now, agent, "ESTABLISHED", host)
    conf = f"conf-{g.hex(10)}"
    now += g.uni(0.3, 1.0)
    g.emit(now, "conference_created", None, {"conf_id": conf})
    g.emit(now + 1000, "conference_member_joined", host, {"conf_id": conf})
    members: list[Leg] = []
    for _ in range(2 + g.below(3)):
        now += g.uni(0.5, 4.0)
        member = _dial(g, now, f"sip:{g.phone()}@carrier-a", session_of=host if g.v1 else None)
        lc.ring(g, now + g.uni(0.3, 2.0), member)
        if g.chance(0.12, "member_no_answer"):
            now = now + 40 * US
            lc.end_unanswered(g, now, member, "no_answer")
            g.emit(now + 1000, "conference_error", None, {
                "conf_id": conf, "error": f"add failed: {member.call_id} did not answer"})
            continue
        now += g.dur(6.0, 1.0, 25.0)
        lc.answer(g, now, member)
        _join(g, now + 2000, conf, member, agent)
        members.append(member)
    now += g.dur(60.0, 10.0, 600.0)
    if members and g.chance(0.5, "conf_mute"):
        who = members[g.below(len(members))]
        g.emit(now, "conference_member_muted", who, {"conf_id": conf})
        now += g.dur(30.0, 3.0, 200.0)
        g.emit(now, "conference_member_unmuted", who, {"conf_id": conf})
    if g.chance(0.35, "conf_merge"):
        now = _merge(g, now + g.uni(1.0, 10.0), conf, host, members, agent)
    if members and g.chance(0.3, "seat_replace"):
        now = _seat_replace(g, now + g.uni(1.0, 10.0), conf, members, agent)
    now += g.dur(90.0, 10.0, 900.0)
    _finish(g, now, conf, host, members, agent)


def _join(g: Gen, t: int, conf: str, member: Leg, agent: Agent) -> None:
    g.emit(t, "conference_member_joined", member, {"conf_id": conf})
    ag.dn(g, t, agent, "PARTYADDED", member)


def _leave(g: Gen, t: int, conf: str, member: Leg, agent: Agent, reason: str = "callee") -> None:
    g.emit(t, "conference_member_left", member, {"conf_id": conf})
    ag.dn(g, t, agent, "PARTYDELETED", member)
    lc.hangup(g, t + g.uni(0.01, 0.2), member, reason, reason)


def _merge(g: Gen, t: int, conf: str, host: Leg, members: list[Leg], agent: Agent) -> int:
    """Consult a third party on a new leg, then merge it into the room."""
    target = sip_uri(g.topo.users[g.below(len(g.topo.users))])
    consult = _dial(g, t, target, session_of=host if g.v1 else None)
    if g.v1:
        g.emit(t + 1000, "conference_consult_dialing", consult, {"target": target})
    lc.ring(g, t + g.uni(0.2, 1.0), consult)
    t += g.dur(5.0, 1.0, 20.0)
    lc.answer(g, t, consult)
    if g.v1:
        g.emit(t + 1000, "conference_consult_connected", consult, {"target": target})
    t += g.dur(20.0, 3.0, 120.0)
    g.emit(t, "conference_merge_requested", host, {"consultation_call_id": consult.call_id})
    if g.chance(0.3, "merge_fail"):
        g.emit(t + 2000, "conference_error", None, {
            "conf_id": conf, "error": "merge failed: consultation leg not bridgeable"})
        g.emit(t + 3000, "conference_merge_failed", consult, {
            "conf_id": conf, "reason": "consultation leg not bridgeable"})
        lc.hangup(g, t + g.uni(0.5, 2.0), consult, "system", "system")
        return t + 2 * US
    _join(g, t + 2000, conf, consult, agent)
    g.emit(t + 3000, "conference_merged", consult, {"conf_id": conf})
    ag.dn(g, t + 3000, agent, "PARTYCHANGED", consult)
    members.append(consult)
    return t + US


def _seat_replace(g: Gen, t: int, conf: str, members: list[Leg], agent: Agent) -> int:
    """Swap one member for a new leg; the order of left/joined differs by dialect."""
    old = members[g.below(len(members))]
    new = _dial(g, t, f"sip:{g.phone()}@carrier-a", session_of=old if g.v1 else None)
    lc.ring(g, t + g.uni(0.3, 1.5), new)
    t += g.dur(6.0, 1.0, 25.0)
    lc.answer(g, t, new)
    ids = {"old_call_id": old.call_id, "new_call_id": new.call_id}
    t += g.uni(0.2, 1.0)
    g.emit(t, "conference_seat_replace_started", new, {"conf_id": conf, **ids})
    if g.chance(0.3, "seat_replace_fail"):
        g.emit(t + 5000, "conference_seat_replace_failed", new, {
            "conf_id": conf, **ids, "reason": "media bridge failed"})
        if g.v1 and g.chance(0.5, "seat_rollback_fail"):
            g.emit(t + 9000, "conference_seat_replace_rollback_failed", new, {
                "conf_id": conf, **ids, "reason": "old member already gone"})
        lc.hangup(g, t + g.uni(0.5, 2.0), new, "system", "system")
        return t + 2 * US
    if g.v1:
        _leave(g, t + 1000, conf, old, agent, "system")
        _join(g, t + 2000, conf, new, agent)
    else:
        _join(g, t + 1000, conf, new, agent)
        _leave(g, t + 2000, conf, old, agent, "system")
    g.emit(t + 300_000, "conference_seat_replace_succeeded", new, {"conf_id": conf, **ids})
    members.remove(old)
    members.append(new)
    return t + US


def _finish(g: Gen, t: int, conf: str, host: Leg, members: list[Leg], agent: Agent) -> None:
    how = g.pick({"host_end": 40.0, "auto": 30.0 if g.v1 else 0.0, "leave": 30.0}, "conf_end")
    if how == "host_end":
        g.emit(t, "conference_ended_by_host", host, {
            "conf_id": conf, "host_call_id": host.call_id,
            "removed_call_ids": [m.call_id for m in members]})
        for m in members:
            ag.dn(g, t + 500, agent, "PARTYDELETED", m)
            lc.hangup(g, t + g.uni(0.05, 0.5), m, "system", "system")
        t += US
    else:
        for m in members:
            t += g.uni(0.5, 20.0)
            _leave(g, t, conf, m, agent)
        t += g.uni(0.5, 5.0)
        if how == "auto":
            g.emit(t, "conference_auto_ended", host,
                   {"conf_id": conf, "reason": "last_member_left"})
        else:
            g.emit(t, "conference_member_left", host, {"conf_id": conf})
    g.emit(t + 1000, "conference_destroyed", None, {"conf_id": conf})
    lc.hangup(g, t + g.uni(0.1, 1.0), host, "caller", "caller")
    assert host.ended is not None
    ag.release_agent(g, host.ended, agent, host, agent_hung_up=True)


def dial_in_conference(g: Gen, t: int) -> None:
    """Today: callers dial a room number (``app=conference``) and talk, no RWI involved."""
    room = f"room-{7000 + g.below(20)}"
    for i in range(2 + g.below(3)):
        at = t + i * g.uni(2.0, 40.0)
        leg = g.new_leg(at, direction="inbound", caller=f"sip:{g.phone()}@10.20.0.9",
                        callee=sip_uri(room.split("-")[1]), uas=True,
                        trunk=TRUNKS[g.below(len(TRUNKS))], context="inbound")
        lc.start(g, at, leg)
        joined = at + g.uni(0.3, 1.5)
        leg.answered = joined
        leg.app_at = joined
        g.emit(joined, "conference_joined", leg, {"conf_id": room, "leg_id": f"leg-{g.hex(8)}"})
        lc.hangup(g, joined + g.dur(300.0, 20.0, 2400.0), leg, "caller", "caller")
