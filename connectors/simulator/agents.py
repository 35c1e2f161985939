"""Agent state machine, extension (DN) signalling and the shift's login and logout."""

from __future__ import annotations

from typing import Any

from connectors.simulator.builder import Gen
from connectors.simulator.records import Agent, Leg
from connectors.simulator.timefmt import US

NOT_READY = ("away", "dnd")


def transition(
    g: Gen, t: int, agent: Agent, to: str, leg: Leg | None = None, reason: str | None = None
) -> None:
    """Move the agent to ``to`` and report it where this build does."""
    frm = agent.status
    held = (t - agent.since) // US if agent.transitions else None
    call_id = leg.call_id if leg is not None else None
    agent.transitions.append((t, frm, to, call_id, reason))
    agent.status = to
    agent.since = t
    if g.agent_events:
        g.emit(t, "agent_state_changed", leg, {
            "agent_id": agent.agent_id, "from_status": frm, "to_status": to, "call_id": call_id,
            "agent_name": agent.name, "agent_extension": agent.extension,
            "caller": agent.extension, "team_id": agent.team_id, "duration_secs": held,
            "reason_code": reason,
        })
    if g.v1:
        if to == "idle" and (frm in NOT_READY or frm.startswith("custom:") or frm == "offline"):
            dn(g, t, agent, "AGENTREADY", None)
        elif to in NOT_READY or to.startswith("custom:"):
            dn(g, t, agent, "AGENTNOTREADY", None, reason_code=reason)


def dn(g: Gen, t: int, agent: Agent, event_name: str, leg: Leg | None, **extra: Any) -> None:
    """1.0's ``dn_state_changed`` for the agent's extension."""
    if not g.v1:
        return
    data: dict[str, Any] = {
        "caller": agent.extension, "event_name": event_name, "system_time": t,
        "call_id": leg.call_id if leg is not None else None, "agent_id": agent.agent_id,
        "caller_name": leg.caller_name if leg is not None else None,
        "callee_name": agent.extension if leg is not None else None,
        "agent_work_mode": "ManualIn" if leg is not None else None,
    }
    data.update(extra)
    g.emit(t, "dn_state_changed", leg, data)


def ring_agent(g: Gen, t: int, agent: Agent, leg: Leg) -> None:
    transition(g, t, agent, "ringing", leg, "CALL")


def connect_agent(g: Gen, t: int, agent: Agent, leg: Leg) -> None:
    transition(g, t, agent, "busy", leg, "CALL")


def release_agent(g: Gen, t: int, agent: Agent, leg: Leg, *, agent_hung_up: bool) -> None:
    """The agent's call ended: DN release, wrap-up, maybe a break, then idle again."""
    dn(g, t, agent, "RELEASED", leg, releasing_party="1 Local" if agent_hung_up else "2 Remote")
    if g.chance(0.15, "onhook"):
        dn(g, t + g.uni(0.2, 2.0), agent, "ONHOOK", None)
    transition(g, t, agent, "wrapup", leg, "WRAPUP")
    t += g.dur(20.0, 3.0, 120.0)
    after = g.pick({"idle": 84.0, "away": 9.0, "dnd": 4.0, "custom": 3.0}, "after_wrapup")
    if after in NOT_READY:
        transition(g, t, agent, after, None, "BREAK" if after == "away" else "DND")
        t += g.dur(240.0, 30.0, 1200.0)
    transition(g, t, agent, "idle", None, None)
    if after == "custom":
        t += g.uni(1.0, 5.0)
        transition(g, t, agent, "custom:training", None, "TRAINING")
        t += g.dur(300.0, 60.0, 900.0)
        transition(g, t, agent, "idle", None, None)
    agent.free_at = t + g.uni(0.5, 3.0)


def login_all(g: Gen, t: int) -> None:
    """Every agent registers its phone and logs in at the start of the shift."""
    for i, agent in enumerate(g.topo.agents):
        at = t + i * 137_000
        if g.v1:
            g.emit(at, "dn_registered", None, {
                "caller": agent.extension, "agent_id": agent.agent_id, "register_time": at})
            dn(g, at, agent, "AGENTLOGIN", None)
        if g.addon:
            g.emit(at, "agent_registered", None, _identity(agent))
        transition(g, at + 1000, agent, "idle", None, "LOGIN")
        agent.free_at = at + US


def logout_all(g: Gen, t: int) -> None:
    """End of the shift: every agent logs out and its phone unregisters."""
    for i, agent in enumerate(g.topo.agents):
        at = max(t, agent.since + US) + i * 111_000
        if agent.status.startswith("custom:") or agent.status not in ("idle", *NOT_READY):
            transition(g, at, agent, "idle", None, None)
        transition(g, at + 1000, agent, "offline", None, "LOGOUT")
        if g.v1:
            dn(g, at + 2000, agent, "AGENTLOGOUT", None)
            g.emit(at + 3000, "dn_unregistered", None, {
                "caller": agent.extension, "agent_id": agent.agent_id,
                "unregister_time": at + 3000})
        if g.addon:
            g.emit(at + 3000, "agent_unregistered", None, _identity(agent))


def _identity(agent: Agent) -> dict[str, Any]:
    return {"agent_id": agent.agent_id, "agent_name": agent.name,
            "agent_extension": agent.extension, "team_id": agent.team_id}


def earliest_agent(g: Gen, agents: list[Agent], avoid: Agent | None = None) -> Agent:
    """The agent free soonest (the first listed on ties); the one that just failed to
    answer counts as free 15 s later."""
    best, best_at = agents[0], 1 << 62
    for agent in agents:
        at = agent.free_at + 15 * US if agent is avoid else agent.free_at
        if at < best_at:
            best, best_at = agent, at
    return best
