"""``/rwi/v1`` served on loopback with the ``websockets`` library, as RustPBX serves it.

Auth: ``Authorization: Bearer <token>`` (exact prefix) or ``?token=``; otherwise HTTP 401
with ``WWW-Authenticate: Bearer realm="rwi", error="invalid_token"`` before the upgrade.
The ``rwi-v1`` subprotocol is echoed when asked for and not required. Events reach a session
by owner / fan-out / broadcast rules; the resume cache holds 1,000 events for 60 s of
wall-clock time, as the server's does (``current``: owner and fan-out only, un-enriched,
returned whole inside the ``session.resume`` reply; ``v1.0``: every event, replayed after
``last_sequence``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from connectors.simulator import ws_commands as wc
from connectors.simulator.records import Leg
from connectors.simulator.render_current import Emission
from connectors.simulator.templates import ORDERED
from connectors.simulator.timefmt import US, rfc3339_autosi
from connectors.simulator.wire import Wire

log = logging.getLogger(__name__)
PATH = "/rwi/v1"
CACHE_SIZE = 1000
CACHE_AGE_US = 60 * US
MAX_LISTED = 100


class RwiWsServer:
    """A WebSocket endpoint fed by :meth:`publish` with each emitted event."""

    def __init__(self, wire: Wire, token: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.wire = wire
        self.v1 = wire.dialect == "v1.0"
        self.token = token
        self.host, self.port = host, port
        self.sessions: dict[ServerConnection, tuple[wc.SessionState, asyncio.Queue[str]]] = {}
        self.cache: deque[tuple[int, int, str, str]] = deque(maxlen=CACHE_SIZE)
        self.calls: dict[str, dict[str, Any]] = {}
        self.frames_sent = 0
        self.subscribed = asyncio.Event()
        self._server: Server | None = None
        self._counter = 0

    async def start(self) -> int:
        """Listen; returns the bound port."""
        self._server = await serve(
            self._handle, self.host, self.port, process_request=self._authorize,
            select_subprotocol=_select_subprotocol,
            max_size=16 * 1024 * 1024, ping_interval=None)
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _authorize(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path != PATH:
            return connection.respond(404, "Not Found\n")
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else \
            (parse_qs(url.query).get("token") or [""])[0]
        if token and hmac.compare_digest(token.encode(), self.token.encode()):
            return None
        headers = Headers([("WWW-Authenticate", 'Bearer realm="rwi", error="invalid_token"'),
                           ("Content-Length", "0")])
        return Response(401, "Unauthorized", headers, b"")

    async def _handle(self, ws: ServerConnection) -> None:
        self._counter += 1
        state = wc.SessionState(f"ws-{self._counter}", self.v1)
        queue: asyncio.Queue[str] = asyncio.Queue()
        self.sessions[ws] = (state, queue)
        sender = asyncio.create_task(self._send_loop(ws, queue))
        try:
            async for message in ws:
                if isinstance(message, str):
                    for reply in self._command(state, message):
                        queue.put_nowait(reply)
        except ConnectionClosed:
            pass
        finally:
            del self.sessions[ws]
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _send_loop(self, ws: ServerConnection, queue: asyncio.Queue[str]) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.send(await queue.get())
                self.frames_sent += 1

    # -- events -------------------------------------------------------------------------
    def publish(self, em: Emission, leg: Leg | None, sequence: int | None) -> None:
        """Deliver one emitted event to the sessions it reaches, and cache it for resume."""
        t, event_type, _, dispatch, route = em[0], em[1], em[2], em[3], em[4]
        if dispatch == "W":
            return
        self._track(event_type, leg, t)
        frame: str | None = None
        for state, queue in self.sessions.values():
            if state.wants(dispatch, route, event_type):
                if frame is None:
                    frame = self.wire.frame(em)
                queue.put_nowait(frame)
        if self.v1 or dispatch in ("O", "F"):
            entry = self.wire.frame(em) if self.v1 else \
                self.wire.resume_entry(em)  # type: ignore[union-attr]
            # Like the server, entries are stamped with the wall clock when cached and expire
            # after 60 s of it (a paced run is real time; simulated time can leap ahead).
            cached_at = int(time.monotonic() * US)
            while self.cache and self.cache[0][0] < cached_at - CACHE_AGE_US:
                self.cache.popleft()
            self.cache.append((cached_at, sequence or 0, route, entry))

    def _track(self, event_type: str, leg: Leg | None, t: int) -> None:
        if leg is None:
            return
        if event_type in ("call_created", "call_incoming"):
            call: dict[str, Any] = {"session_id": leg.call_id}
            if self.v1:
                call["call_id"] = leg.call_id
            call.update({"caller": leg.caller, "callee": leg.callee,
                         "direction": leg.direction, "status": "ringing",
                         "started_at": rfc3339_autosi(leg.created, 1 + leg.idx % 997)})
            self.calls[leg.call_id] = call
        elif event_type in ("call_answered", "queue_agent_connected", "conference_joined"):
            call = self.calls.get(leg.call_id, {})
            if call:
                call["status"] = "talking"
                call["answered_at"] = rfc3339_autosi(t, 1 + leg.idx % 997)
        elif event_type in ("call_hangup", "call_busy", "call_no_answer"):
            self.calls.pop(leg.call_id, None)

    # -- commands -----------------------------------------------------------------------
    def _command(self, state: wc.SessionState, text: str) -> list[str]:
        cmd = wc.parse_command(text, state)
        if cmd is None:
            return []
        if isinstance(cmd, str):
            return [cmd]
        action, aid, params = cmd.action, cmd.action_id, cmd.params
        if action in ("session.subscribe", "Subscribe"):
            contexts = params.get("contexts") or []
            state.contexts.update(str(c) for c in contexts)
            events = params.get("events")
            if not self.v1:
                state.events = frozenset(events) if events else None
            self.subscribed.set()
            return [wc.completed(aid, action)]
        if action == "session.unsubscribe":
            state.contexts.difference_update(params.get("contexts") or [])
            return [wc.completed(aid, action)]
        if action in ("session.list_calls", "ListCalls"):
            listed = list(self.calls.values())[::-1][:MAX_LISTED]
            return [wc.completed(aid, action, data=listed)]
        if action == "session.attach_call":
            return [self._attach(state, aid, str(params.get("call_id", "")))]
        if action == "session.detach_call":
            call_id = str(params.get("call_id", ""))
            state.owned.discard(call_id)
            return [wc.completed(aid, action, call_id=call_id)]
        if action == "session.resume":
            return self._resume(state, aid, params)
        if action == "call.resume" and not self.v1:
            call_id = str(params.get("call_id", ""))
            entries = [e[3] for e in self.cache if e[2] == call_id]
            data = f'{{"call_id":{ORDERED(call_id)},"replayed_count":{len(entries)},' \
                   f'"events":[{",".join(entries)}]}}'
            return [wc.completed(aid, action, call_id=call_id, data_text=data)]
        return [wc.failed(aid, action, params.get("call_id"),
                          "Command failed: the simulated PBX does not execute call control")]

    def _attach(self, state: wc.SessionState, aid: str, call_id: str) -> str:
        if call_id not in self.calls:
            return wc.failed(aid, "session.attach_call", call_id, f"Call not found: {call_id}")
        if any(call_id in other.owned for other, _ in self.sessions.values()
               if other is not state):
            return wc.failed(aid, "session.attach_call", call_id,
                             "Command failed: call is owned by another session")
        state.owned.add(call_id)
        return wc.completed(aid, "session.attach_call", call_id=call_id,
                            data={"call_id": call_id})

    def _resume(self, state: wc.SessionState, aid: str, params: dict[str, Any]) -> list[str]:
        if not self.v1:
            entries = [e[3] for e in self.cache]
            data = f'{{"replayed_count":{len(entries)},"events":[{",".join(entries)}]}}'
            return [wc.completed(aid, "session.resume", data_text=data)]
        last = params.get("last_sequence")
        last = last if isinstance(last, int) else 0
        frames = [e[3] for e in self.cache if e[1] > last]
        resumed = ORDERED({"session_id": state.session_id, "last_sequence": last})
        tail = resumed if self.wire.frame_shape == "flat" else (  # type: ignore[union-attr]
            f'{{"session_resumed":{resumed}}}' if self.wire.frame_shape == "wrapped"  # type: ignore[union-attr]
            else f'{{"rwi":"1.0","session_resumed":{resumed}}}')
        return [wc.completed(aid, "session.resume", data={"replayed_count": len(frames)}),
                *frames, tail]


def _select_subprotocol(_conn: ServerConnection,
                        offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """Echo ``rwi-v1`` when asked for it; the upgrade also succeeds without one."""
    return Subprotocol("rwi-v1") if "rwi-v1" in offered else None
