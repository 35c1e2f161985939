"""Inbound scenarios: IVR then queue then agent, direct calls to an extension, internal calls."""

from __future__ import annotations

from connectors.simulator import lifecycle as lc
from connectors.simulator.builder import Gen, sip_uri
from connectors.simulator.ivr import run_ivr
from connectors.simulator.queueing import run_queue
from connectors.simulator.records import Leg, Recording
from connectors.simulator.talk import converse
from connectors.simulator.timefmt import US
from connectors.simulator.topology import DIDS, TRUNKS

CARRIER_IP = "10.20.0.9"


def inbound_queue(g: Gen, t: int) -> None:
    """A customer dials a service number: IVR, then a queue, then (usually) an agent."""
    did = g.pick({"4000": 80.0, "4001": 12.0, "4002": 8.0}, "did")
    leg = g.new_leg(
        t, direction="inbound", caller=f"sip:{g.phone()}@{CARRIER_IP}", callee=sip_uri(did),
        uas=True, trunk=TRUNKS[g.below(len(TRUNKS))], context="inbound")
    lc.start(g, t, leg)
    picked_up = t + g.uni(0.15, 1.2)
    rec = None
    if not g.v1 and not g.chance(0.12, "no_recording"):
        rec = lc.start_recording(g, picked_up, leg, auto=True)
    t, outcome, target = run_ivr(g, picked_up, leg, DIDS[did])
    if outcome == "abandoned":
        lc.hangup(g, t + 1000, leg, "caller", "caller")
    elif outcome == "hangup":
        lc.hangup(g, t + g.uni(0.5, 3.0), leg, "system", "system")
    elif outcome == "voicemail":
        voicemail(g, t + g.uni(0.1, 0.5), leg)
    else:
        assert target is not None
        if g.v1 and g.chance(0.35, "metadata_updated"):
            _metadata(g, t + 500, leg, target)
        queue_stage(g, t + g.uni(0.05, 0.3), leg, target, rec)


def queue_stage(g: Gen, t: int, leg: Leg, queue_id: str, rec: Recording | None) -> None:
    """Queue (following 1.0 overflows), then talk, hang up, or run the queue's fallback."""
    # Showcase callers wait for an agent unless told otherwise, so their branches happen.
    patience = g.dur(110.0, 8.0, 1200.0)
    if g.force is not None:
        patience = 5 * US if "impatient" in g.force else 10**15
    give_up = t + patience
    while True:
        t, result, agent = run_queue(g, t, leg, queue_id, give_up)
        queue = g.topo.queues[queue_id]
        if result != "overflow" or queue.overflow_to is None:
            break
        queue_id = queue.overflow_to
        t += g.uni(0.05, 0.3)
    if result == "connected":
        converse(g, t, leg, agent=agent, queue_id=queue_id, rec=rec)
    elif result == "abandoned":
        lc.hangup(g, t + 1000, leg, lc.abandon_reason(g), "caller")
    elif queue.fallback == "voicemail":
        voicemail(g, t + g.uni(0.1, 0.6), leg)
    else:
        lc.hangup(g, t + g.uni(0.2, 1.0), leg, "system", "system")


def voicemail(g: Gen, t: int, leg: Leg) -> None:
    """The caller hears the greeting, leaves a message and hangs up."""
    if g.v1:
        track = f"track-{g.hex(8)}"
        g.emit(t, "media_play_started", leg, {"leg_id": None, "track_id": track})
        t += g.dur(4.0, 2.0, 8.0)
        g.emit(t, "media_play_finished", leg, {"leg_id": None, "track_id": track,
                                               "interrupted": False})
        lc.start_recording(g, t + 300_000, leg, auto=False)
    lc.hangup(g, t + g.dur(25.0, 3.0, 180.0), leg, "caller", "caller")


def _metadata(g: Gen, t: int, leg: Leg, queue_id: str) -> None:
    runs = leg.ivr_runs
    path = [f"menu:{v.node_id}" for r in runs for v in r.visits] + [f"queue:{queue_id}"]
    g.emit(t, "call_metadata_updated", leg, {"metadata": {
        "root_call_id": leg.root_call_id, "caller_name": leg.caller_name,
        "callee_name": leg.callee_name, "called_phone": None, "dial_direction": leg.direction,
        "uuid": leg.uuid, "routing_path": path, "app_id": runs[-1].app_id if runs else None,
        "routing_target": f"queue:{queue_id}", "switch_name": "SIP_Switch_KS"}})


def direct(g: Gen, t: int, *, internal: bool = False) -> None:
    """A call straight to an extension: answered, or busy, unanswered, cancelled, rejected."""
    users = g.topo.users
    callee = users[g.below(len(users))]
    if internal:
        caller = users[(users.index(callee) + 1 + g.below(len(users) - 1)) % len(users)]
        leg = g.new_leg(t, direction="internal", caller=sip_uri(caller), callee=sip_uri(callee),
                        uas=True, remote_ip=f"10.0.1.{10 + users.index(caller)}",
                        context="internal")
    else:
        leg = g.new_leg(t, direction="inbound", caller=f"sip:{g.phone()}@{CARRIER_IP}",
                        callee=sip_uri(callee), uas=True,
                        trunk=TRUNKS[g.below(len(TRUNKS))], context="inbound")
    lc.start(g, t, leg)
    ringing = t + g.uni(0.1, 0.6)
    branch = g.pick({"answer": 68.0, "no_answer": 11.0, "busy": 8.0, "cancel": 7.0,
                     "reject": 3.0, "fail": 3.0}, "direct")
    if branch == "busy":
        lc.hangup(g, ringing, leg, "rejected", "callee", 486)
        return
    if branch == "fail":
        status = (404, 503)[g.below(2)]
        lc.hangup(g, ringing + g.uni(0.5, 4.0), leg,
                  "failed" if status == 404 else "serverUnavailable", "system", status)
        return
    lc.ring(g, ringing, leg)
    if branch == "no_answer":
        lc.hangup(g, ringing + 30 * US, leg, "noAnswer", "system", 480)
    elif branch == "cancel":
        lc.hangup(g, ringing + g.dur(8.0, 1.5, 28.0), leg, "canceled", "caller", 487)
    elif branch == "reject":
        lc.hangup(g, ringing + g.uni(1.5, 6.0), leg, "rejected", "callee", 603)
    else:
        answered = ringing + g.dur(6.0, 1.0, 25.0)
        lc.answer(g, answered, leg)
        rec = None
        if g.v1 and g.chance(0.3, "direct_record"):
            rec = lc.start_recording(g, answered + g.uni(0.2, 1.0), leg, auto=False)
        elif not g.v1 and not internal and not g.chance(0.3, "no_recording"):
            rec = lc.start_recording(g, answered, leg, auto=True)
        converse(g, answered, leg, rec=rec, median_s=120.0)
