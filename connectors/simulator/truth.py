"""Ground truth: what the analytics tables must say, derived from the model's records.

Rows are JSON objects with a ``kind``. Every value is what an ETL can derive exactly from
the events of that dialect, so precision differs:

* ``current`` -- every instant is exact to the microsecond: the webhook ``timestamp`` is
  the dispatch instant (RFC 3339, ns; truncate to µs), payload instants likewise.
* ``v1.0`` -- the envelope ``timestamp`` has whole seconds, so call, queue, hold, agent and
  recording start/stop instants are truncated to the second (and durations between them
  are whole seconds); IVR instants come from ``entry_time``/``exit_time``/
  ``completion_time`` (µs); ``uploaded_at`` from ``upload_time`` (s).

Definitions (``*_ms`` = floor of the µs difference / 1000; null when an end is missing):

* ``created_at`` first event (``call_incoming``/``call_created``); ``ringing_at`` first
  ``call_ringing``; ``answered_at`` when a person or the far end answered: the first
  ``queue_agent_connected`` of the call, else ``call_answered``, else ``conference_joined``
  (an IVR or queue app picking up is not an answer); ``ended_at`` ``call_hangup``, or
  ``call_busy``/``call_no_answer`` for originates that end without one.
* ``ring_ms`` first ringing -> answered, or -> end when never answered; ``talk_ms``
  answered -> ended; ``total_ms`` created -> ended; ``hold_ms`` sum of hold intervals
  (``media_hold_started`` -> ``media_hold_stopped``, or -> the end); ``hold_count`` holds
  started; ``transfer_count`` ``call_transferred`` events.
* ``outcome``: ``in_progress`` until the end; ``answered`` when answered; ``busy`` /
  ``no_answer`` for ``call_busy``/``call_no_answer``; else from ``call_hangup.reason``:
  ``abandoned`` -> abandoned; ``caller`` or ``system`` -> abandoned when the leg was in an
  IVR or queue, else ``caller`` -> canceled and ``system`` -> failed; ``canceled`` ->
  canceled; ``noAnswer``/``autohangup`` -> no_answer; ``rejected`` -> busy with SIP
  486/600, else rejected; anything else -> failed.
* ``session_id``: ``current`` the last ``session_id`` the leg's events carry (an attended
  transfer re-parents the consult leg); ``v1.0`` ``call_incoming.root_call_id``.
* ``trunk``: ``v1.0`` ``call_incoming.trunk``; ``current`` the first non-null ``trunk`` of
  the leg's events (``call_created`` has a present ``null`` that blocks the context fill).
* ``direction``: ``call_incoming.dial_direction`` / the context ``direction``; ``caller``
  and ``callee`` the SIP URIs of the first event.
* ``queue_id`` the last queue joined; ``queue_wait_ms`` first ``queue_joined`` -> agent
  connected, or -> the ``queue_left`` after the last ``queue_joined`` (null while the call
  still waits; a 1.0 overflow leaves one queue and joins the next); ``agent_id`` as
  ``queue_agent_connected`` says
  (the agent's SIP URI on a build without agent registry); ``ivr_app_id`` the first menu
  IVR app (``ivr_node_entered.app_id``); ``recording_count`` recordings seen
  (``record_started``, or ``record_stopped`` for today's automatic recordings).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from connectors.simulator.records import Agent, IvrRun, Leg, Recording
from connectors.simulator.templates import ORDERED
from connectors.simulator.timefmt import US, truth_time

FOREVER = 1 << 62
_KIND_ORDER = ("summary", "session", "call", "ivr_path", "ivr_node_visit", "queue_call",
               "recording", "agent_state")


class TruthBuilder:
    """Rows for one PBX; ``cutoff`` is the last instant sent when a run stopped early."""

    def __init__(self, dialect: str, cutoff: int | None) -> None:
        self.dialect = dialect
        self.v1 = dialect == "v1.0"
        self.c = FOREVER if cutoff is None else cutoff

    def q(self, t: int | None) -> int | None:
        """An instant as the dialect lets an ETL see it (None if not yet happened)."""
        if t is None or t > self.c:
            return None
        return t - t % US if self.v1 else t

    def seen(self, t: int | None) -> bool:
        return t is not None and t <= self.c

    def calls(self, legs: Iterable[Leg]) -> Iterator[dict[str, Any]]:
        for leg in legs:
            if self.seen(leg.created):
                yield self._call(leg)

    def _call(self, leg: Leg) -> dict[str, Any]:
        q = self.q
        created, ringing, answered, ended = q(leg.created), q(leg.ringing), q(leg.answered), \
            q(leg.ended)
        ring_end = answered if answered is not None else ended
        visits = [v for v in leg.queue_visits if self.seen(v.joined)]
        last = visits[-1] if visits else None
        wait_end = None
        if last is not None:
            wait_end = q(last.connected) if self.seen(last.connected) else q(last.left)
        hold_us = sum(
            (q(h[1]) or 0) - (q(h[0]) or 0) for h in leg.holds if self.seen(h[1]))
        tree = [r for r in leg.ivr_runs if r.kind == "tree" and self.seen(r.started)]
        hung_up = ended is not None and leg.end_kind == "hangup"
        return {
            "kind": "call", "call_id": leg.call_id, "session_id": self._session_of(leg),
            "direction": leg.direction, "caller": leg.caller, "callee": leg.callee,
            "trunk": self._trunk(leg), "created_at": truth_time(created),
            "ringing_at": truth_time(ringing), "answered_at": truth_time(answered),
            "ended_at": truth_time(ended), "ring_ms": _ms(ringing, ring_end),
            "talk_ms": _ms(answered, ended), "hold_ms": hold_us // 1000,
            "total_ms": _ms(created, ended), "outcome": self._outcome(leg),
            "hangup_reason": leg.hangup_reason if hung_up else None,
            "hangup_by": leg.hangup_by if hung_up and not self.v1 else None,
            "sip_status": leg.sip_status if hung_up else None,
            "transfer_count": sum(1 for t in leg.transfers if self.seen(t)),
            "hold_count": sum(1 for h in leg.holds if self.seen(h[0])),
            "queue_id": last.queue_id if last else None,
            "queue_wait_ms": _ms(q(visits[0].joined), wait_end) if visits else None,
            "agent_id": leg.agent_id if self.seen(leg.answered) and leg.queue_visits else None,
            "ivr_app_id": tree[0].app_id if tree else None,
            "recording_count": sum(1 for r in leg.recordings if self._observed(r)),
            "dialect": self.dialect, "complete": ended is not None,
        }

    def _trunk(self, leg: Leg) -> str | None:
        if self.v1 or leg.trunk is None:
            return leg.trunk
        # Today's call_created carries "trunk": null; enrichment adds it to later events.
        later = [x for x in (leg.ringing, leg.app_at, leg.answered, leg.ended) if x is not None]
        return leg.trunk if later and self.seen(min(later)) else None

    def session_of(self, leg: Leg) -> str:
        """The session id an ETL derives for the leg."""
        return self._session_of(leg)

    def _session_of(self, leg: Leg) -> str:
        if self.v1:
            return leg.root_call_id
        if leg.reparent_at is not None and not self.seen(leg.reparent_at):
            return leg.call_id
        return leg.session_id

    def _outcome(self, leg: Leg) -> str:
        if not self.seen(leg.ended):
            return "in_progress"
        if leg.answered is not None:
            return "answered"
        if leg.end_kind in ("busy", "no_answer"):
            return str(leg.end_kind)
        reason = leg.hangup_reason
        in_app = leg.app_at is not None and leg.app_at <= (leg.ended or 0)
        if reason == "abandoned" or (reason in ("caller", "system") and in_app):
            return "abandoned"
        if reason in ("caller", "canceled"):
            return "canceled"
        if reason in ("noAnswer", "autohangup"):
            return "no_answer"
        if reason == "rejected":
            return "busy" if leg.sip_status in (486, 600) else "rejected"
        return "failed"

    def _observed(self, rec: Recording) -> bool:
        return self.seen(rec.stopped if rec.auto else rec.started)

    def sessions(self, legs: Iterable[Leg]) -> Iterator[dict[str, Any]]:
        groups: dict[str, list[Leg]] = {}
        for leg in legs:
            if self.seen(leg.created):
                groups.setdefault(self._session_of(leg), []).append(leg)
        for session_id, members in groups.items():
            members.sort(key=lambda m: (m.created, m.call_id))
            ends = [self.q(m.ended) for m in members]
            ended = None if any(e is None for e in ends) else max(e for e in ends if e)
            started = self.q(members[0].created)
            yield {
                "kind": "session", "session_id": session_id,
                "call_ids": [m.call_id for m in members], "leg_count": len(members),
                "direction": members[0].direction, "started_at": truth_time(started),
                "ended_at": truth_time(ended), "total_ms": _ms(started, ended),
                "answered": any(self.seen(m.answered) for m in members),
                "dialect": self.dialect,
            }

    def ivr(self, legs: Iterable[Leg]) -> Iterator[dict[str, Any]]:
        for leg in legs:
            for run in leg.ivr_runs:
                if run.kind == "tree" and self.seen(run.started):
                    yield from self._ivr_run(leg, run)

    def _ivr_run(self, leg: Leg, run: IvrRun) -> Iterator[dict[str, Any]]:
        visits = [v for v in run.visits if self.seen(v.entered)]
        done = self.seen(run.completed)
        yield {
            "kind": "ivr_path", "call_id": leg.call_id, "app_id": run.app_id,
            "path": [v.node_id for v in visits],
            "digits": "".join(v.digit for v in visits if v.digit and self.seen(v.exited)),
            "node_count": len(visits), "started_at": truth_time(run.started),
            "ended_at": truth_time(run.completed if done else None),
            "total_ms": _ms(run.started, run.completed if done else None),
            "final_result": run.final_result if done else None,
            "final_routing_target": run.final_target if done else None,
            "exit_node_id": visits[-1].node_id if done and visits else None,
            "abandoned": run.abandoned and done, "dialect": self.dialect,
        }
        for index, v in enumerate(visits):
            exited = v.exited if self.seen(v.exited) else None
            yield {
                "kind": "ivr_node_visit", "call_id": leg.call_id, "app_id": run.app_id,
                "visit_index": index, "node_id": v.node_id, "node_name": v.node_name,
                "node_type": v.node_type, "entered_at": truth_time(v.entered),
                "exited_at": truth_time(exited), "dwell_ms": _ms(v.entered, exited),
                "result_value": v.result_value if exited is not None else None,
                "next_node_id": v.next_node_id if exited is not None else None,
                "dialect": self.dialect,
            }

    def queue_calls(self, legs: Iterable[Leg]) -> Iterator[dict[str, Any]]:
        for leg in legs:
            for v in leg.queue_visits:
                if not self.seen(v.joined):
                    continue
                connected = self.seen(v.connected)
                left = self.q(v.left)
                yield {
                    "kind": "queue_call", "call_id": leg.call_id,
                    "session_id": self._session_of(leg), "queue_id": v.queue_id,
                    "joined_at": truth_time(self.q(v.joined)), "left_at": truth_time(left),
                    "wait_ms": _ms(self.q(v.joined), left),
                    "result": v.result if left is not None else "waiting",
                    "agent_id": v.agent_id if connected else None,
                    "offer_count": sum(1 for t in v.offers if self.seen(t)),
                    "dialect": self.dialect,
                }

    def recordings(self, legs: Iterable[Leg]) -> Iterator[dict[str, Any]]:
        for leg in legs:
            for rec in leg.recordings:
                if self._observed(rec):
                    yield self._recording(leg, rec)

    def _recording(self, leg: Leg, rec: Recording) -> dict[str, Any]:
        stopped = self.seen(rec.stopped)
        available = self.seen(rec.meta_at)
        if self.seen(rec.failed):
            status = "failed"
        elif available:
            status = "available"
        else:
            status = "stopped" if stopped else "recording"
        if self.v1:
            filename = rec.filename if stopped else None
            url = rec.download_url if stopped else None
            agent = rec.agent_id if stopped else None
            call_type = rec.call_type if stopped else None
            uploaded = self.q(rec.upload_time) if available else None
        else:
            filename = rec.meta_filename if available else (rec.filename if stopped else None)
            url = rec.download_url if available else None
            agent = rec.agent_id if available and rec.agent_id and \
                not rec.agent_id.startswith("sip:") else None
            call_type = rec.call_type if available else None
            uploaded = rec.upload_time if available else None
        return {
            "kind": "recording", "call_id": leg.call_id, "recording_id": rec.rec_id,
            "filename": filename, "file_size": rec.file_size if stopped else None,
            "duration_secs": rec.duration_secs if stopped else None, "download_url": url,
            "started_at": truth_time(None if rec.auto else self.q(rec.started)),
            "stopped_at": truth_time(self.q(rec.stopped)), "uploaded_at": truth_time(uploaded),
            "status": status, "agent_id": agent, "call_type": call_type,
            "pause_count": sum(1 for p in rec.pauses if self.seen(p[0])),
            "dialect": self.dialect,
        }

    def agent_states(self, agents: Iterable[Agent]) -> Iterator[dict[str, Any]]:
        for agent in agents:
            moves = [m for m in agent.transitions if self.seen(m[0])]
            for i, (t, _frm, to, call_id, reason) in enumerate(moves):
                end = moves[i + 1][0] if i + 1 < len(moves) else None
                start_q, end_q = self.q(t), self.q(end)
                yield {
                    "kind": "agent_state", "agent_id": agent.agent_id, "state": to,
                    "started_at": truth_time(start_q), "ended_at": truth_time(end_q),
                    "duration_ms": _ms(start_q, end_q), "call_id": call_id,
                    "reason_code": reason, "dialect": self.dialect,
                }


def _ms(start: int | None, end: int | None) -> int | None:
    if start is None or end is None:
        return None
    return (end - start) // 1000


def encode_rows(rows: Iterable[dict[str, Any]]) -> list[str]:
    """JSON lines in a deterministic order: by kind, then by the row's own text."""
    lines = [(_KIND_ORDER.index(r["kind"]), ORDERED(r)) for r in rows]
    lines.sort()
    return [text for _, text in lines]
