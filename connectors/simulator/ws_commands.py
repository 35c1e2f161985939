"""The ``/rwi/v1`` command protocol: parsing, replies and per-session subscriptions (§1.4-§1.5)."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from connectors.simulator.templates import ORDERED

ACTION_ID_TTL_S = 60.0
ACTION_ID_CAP = 256
# Every action the server knows; the simulator answers the read-only ones.
KNOWN_ACTIONS = frozenset({
    "session.subscribe", "Subscribe", "session.unsubscribe", "session.list_calls", "ListCalls",
    "session.attach_call", "session.detach_call", "session.resume", "call.resume",
    "call.originate", "Originate", "call.answer", "Answer", "call.reject", "call.ring",
    "call.hangup", "call.bridge", "call.unbridge", "call.transfer", "call.transfer.replace",
    "call.transfer.attended", "call.transfer.complete", "call.transfer.cancel", "call.hold",
    "call.unhold", "call.set_ringback_source", "call.set_var", "call.get_var",
    "call.send_dtmf", "call.leg_add", "call.leg_remove", "call.app_start", "call.app_stop",
    "app.chain", "AppChain", "media.play", "MediaPlay", "media.stop", "dtmf.collect",
    "record.start", "record.pause", "record.resume", "record.stop", "queue.enqueue",
    "queue.dequeue", "queue.hold", "queue.unhold", "queue.set_priority", "queue.assign_agent",
    "queue.requeue", "supervisor.listen", "supervisor.whisper", "supervisor.barge",
    "supervisor.takeover", "supervisor.stop", "sip.message", "sip.notify", "sip.options_ping",
    "conference.create", "conference.add", "conference.remove", "conference.mute",
    "conference.unmute", "conference.destroy", "conference.end", "conference.merge",
    "conference.seat_replace",
})
NO_PARAMS = frozenset({"session.list_calls", "ListCalls"})
EMPTY_PARAMS_OK = frozenset({"session.resume", "call.resume"})


@dataclass(slots=True)
class Command:
    action: str
    action_id: str
    params: dict[str, Any]


@dataclass(slots=True)
class SessionState:
    """What one connection asked for: contexts, an event filter, owned calls."""

    session_id: str
    v1: bool
    contexts: set[str] = field(default_factory=set)
    events: frozenset[str] | None = None
    owned: set[str] = field(default_factory=set)
    seen_ids: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def wants(self, dispatch: str, route: str, event_type: str) -> bool:
        """Does an event dispatched this way reach this session?"""
        if self.events is not None and event_type not in self.events:
            return False
        if dispatch == "B":
            return True
        if dispatch == "O":
            return route in self.owned
        if dispatch == "F":
            if route in self.contexts:
                return True
            if self.v1:
                return "*" in self.contexts or any(
                    c.endswith("*") and route.startswith(c[:-1]) for c in self.contexts)
        return False

    def fresh(self, action_id: str) -> bool:
        """False for an ``action_id`` reused within 60 s (the server drops those silently)."""
        now = time.monotonic()
        while self.seen_ids and next(iter(self.seen_ids.values())) < now - ACTION_ID_TTL_S:
            self.seen_ids.popitem(last=False)
        if action_id in self.seen_ids:
            return False
        self.seen_ids[action_id] = now
        if len(self.seen_ids) > ACTION_ID_CAP:
            self.seen_ids.popitem(last=False)
        return True


def parse_command(text: str, state: SessionState) -> Command | str | None:
    """A command, an error reply text, or None when the frame is dropped without a reply.

    As the server does: a frame without ``action_id``, or reusing one within 60 s, is
    dropped before the action is even looked at.
    """
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return failed("", "", None, f"parse_error: {exc}")
    if not isinstance(doc, dict):
        return failed("", "", None, "parse_error: expected a JSON object")
    action_id = doc.get("action_id")
    if not isinstance(action_id, str) or not action_id or not state.fresh(action_id):
        return None
    action = doc.get("action")
    if not isinstance(action, str) or not action:
        return failed(action_id, "", None, "missing_action")
    if action not in KNOWN_ACTIONS:
        return failed(action_id, action, None, f"unknown_action: unknown variant `{action}`")
    params = doc.get("params")
    if params is not None and not isinstance(params, dict):
        return failed(action_id, action, None, "unknown_action: invalid type for `params`")
    if not params and action not in NO_PARAMS and action not in EMPTY_PARAMS_OK:
        return failed(action_id, action, None, "unknown_action: missing field `params`")
    if params is None and action in EMPTY_PARAMS_OK:
        return failed(action_id, action, None, "unknown_action: missing field `params`")
    return Command(action, action_id, params or {})


def completed(action_id: str, action: str, call_id: str | None = None,
              data: Any = None, data_text: str | None = None) -> str:
    """``{"type":"command_completed",...}``; ``data_text`` splices pre-encoded JSON."""
    head = {"type": "command_completed", "action_id": action_id, "action": action}
    if call_id is not None:
        head["call_id"] = call_id
    head["status"] = "success"
    text = ORDERED(head)
    if data_text is not None:
        return text[:-1] + f',"data":{data_text}}}'
    if data is not None:
        return text[:-1] + f',"data":{ORDERED(data)}}}'
    return text


def failed(action_id: str, action: str, call_id: str | None, error: str) -> str:
    body: dict[str, Any] = {"type": "command_failed", "status": "error", "action_id": action_id,
                            "action": action}
    if call_id is not None:
        body["call_id"] = call_id
    body["error"] = error
    return ORDERED(body)
