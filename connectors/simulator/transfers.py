"""Blind and attended transfers of a talking leg, including failures and cancels."""

from __future__ import annotations

from collections.abc import Callable

from connectors.simulator import lifecycle as lc
from connectors.simulator.builder import Gen, sip_uri
from connectors.simulator.records import Leg
from connectors.simulator.timefmt import US

# talk.converse(g, t, leg, features=..., median_s=...) -> end instant
Converse = Callable[..., int]


def transfer(g: Gen, t: int, leg: Leg, converse: Converse) -> int | None:
    """Transfer ``leg`` at ``t``; returns when it ended, or None when it keeps talking."""
    target = sip_uri(g.topo.users[g.below(len(g.topo.users))])
    if g.pick({"blind": 60.0, "attended": 40.0}, "transfer_kind") == "blind":
        return _blind(g, t, leg, target, converse)
    return _attended(g, t, leg, target, converse)


def _blind(g: Gen, t: int, leg: Leg, target: str, converse: Converse) -> int | None:
    g.emit(t, "call_transfer_accepted", leg, {"transfer_target": target})
    done = t + g.uni(0.4, 2.5)
    if g.chance(0.22, "transfer_fail"):
        status, reason = ((486, "busy"), (404, "not_found"), (480, "temporarily_unavailable"))[
            g.below(3)]
        g.emit(done, "call_transfer_failed", leg, {
            "sip_status": status, "reason": reason, "transfer_target": target})
        return None
    _transferred(g, done, leg, target)
    ended = done + g.uni(0.05, 0.4)
    lc.hangup(g, ended, leg, "refer", "transfer")
    _target_leg(g, ended + g.uni(0.05, 0.3), leg, target, converse)
    return ended


def _transferred(g: Gen, t: int, leg: Leg, target: str) -> None:
    leg.transfers.append(t)
    g.emit(t, "call_transferred", leg, {"transfer_target": target})


def _target_leg(g: Gen, t: int, origin: Leg, target: str, converse: Converse) -> None:
    """The REFER makes the transferee call the target: a new leg of the same logical call."""
    new = g.new_leg(t, direction="internal", caller=origin.caller, callee=target, uas=True,
                    session_of=origin, remote_ip="10.0.1.20")
    lc.start(g, t, new)
    ring = t + g.uni(0.1, 0.5)
    lc.ring(g, ring, new)
    if g.chance(0.15, "target_no_answer"):
        lc.hangup(g, ring + 30 * US, new, "noAnswer", "system", 480)
        return
    answer = ring + g.dur(5.0, 1.0, 20.0)
    lc.answer(g, answer, new)
    converse(g, answer, new, features=False, median_s=60.0)


def _attended(g: Gen, t: int, leg: Leg, target: str, converse: Converse) -> int | None:
    """Consult the target on a new originated leg, then complete or cancel."""
    g.emit(t, "call_transfer_accepted", leg, {"transfer_target": target})
    consult = g.new_leg(t + g.uni(0.2, 1.0), direction="outbound", caller="sip:rwi@pbx.local",
                        callee=target, uas=False, session_of=leg if g.v1 else None)
    lc.start(g, consult.created, consult)
    ring = consult.created + g.uni(0.1, 0.6)
    lc.ring(g, ring, consult)
    if g.chance(0.1, "consult_no_answer"):
        gave_up = ring + 30 * US
        lc.end_unanswered(g, gave_up, consult, "no_answer")
        g.emit(gave_up + 1000, "call_transfer_failed", leg, {
            "sip_status": 487, "reason": "cancelled", "transfer_target": target})
        return None
    answer = ring + g.dur(5.0, 1.0, 15.0)
    lc.answer(g, answer, consult)
    decided = answer + g.dur(20.0, 4.0, 90.0)
    if g.chance(0.3, "attended_cancel"):
        g.emit(decided, "call_transfer_failed", leg, {
            "sip_status": 487, "reason": "cancelled", "transfer_target": target})
        lc.hangup(g, decided + g.uni(0.05, 0.3), consult, "caller", "caller")
        return None
    _transferred(g, decided, leg, target)
    mark = 0
    if not g.v1:
        # transfer.complete re-parents the consult leg into the transferee's logical call.
        consult.session_id = leg.session_id
        g.emit(decided, "_reparent", consult, {"session_id": leg.session_id})
        mark = g.seq
    ended = decided + g.uni(0.05, 0.4)
    lc.hangup(g, ended, leg, "refer", "transfer")
    converse(g, ended, consult, features=False, median_s=90.0)
    if mark:
        # An ETL learns the new session from the consult leg's next event.
        consult.reparent_at = min(f[0] for f in g.out if f[3] is consult and f[1] > mark
                                  and not f[2].startswith("_"))
    return ended
