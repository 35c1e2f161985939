"""A passive WebSocket listener on a PBX's ``/rwi/v1``.

It subscribes (contexts and event filter), resumes on every connect so events cached while
it was away are replayed (``last_sequence`` for 1.0 servers; today's servers ignore it and
put the whole cache in the ``command_completed`` reply, which is converted with source
``ws_resume``), and reconnects with capped exponential backoff and jitter. It never attaches
to or detaches from calls: either would take ownership from, or delete the call context of,
the applications that control them.

Frames are read by one task and converted in bursts by another: whatever arrived while the
previous burst was being converted is converted next and handed to the publisher as one
submission (split only to respect the in-flight cap), so the producer packs it into few
record batches. Reading stops while a burst waits for room under the cap, which pushes back
through TCP to the PBX; nothing is dropped. A failed delivery closes the connection, and
the resume on reconnect replays from the last sequence whose events (and every earlier
one) were acknowledged. An event too large for one Kafka message is converted into a dead
letter (reason ``event_too_large``, raw bytes cut to fit) and the frames after it go on as
usual: no retry could ever deliver it.

A frame over ``max_frame_bytes`` cannot be read at all: the connection is closed (1009)
before it is. That is recorded as a dead letter (reason ``frame_too_large``, with the sizes;
the bytes were never read) and the next connections accept frames up to twice as large, or
as large as the refused one, up to ``FRAME_LIMIT_GROWTH`` times the setting — so the resume
delivers the frame (then converted, or dead-lettered as ``event_too_large``) instead of the
listener reconnecting into the same refusal until the PBX's cache lets it go.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import re
import ssl
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.frames import CloseCode

from pipelines.encode import OutgoingMessage
from pipelines.events import DeadLetter
from pipelines.ingest import BodyConverter, Converted

from .metrics import Metrics
from .publisher import Publisher, PublishError

log = logging.getLogger(__name__)

SUBPROTOCOL = "rwi-v1"
# The only commands a passive listener sends.
LISTENER_ACTIONS = frozenset({"session.subscribe", "session.resume"})
# Frames (and their bytes) read ahead of conversion before reading pauses: the burst limit.
MAX_BURST_FRAMES = 1024
MAX_BURST_BYTES = 4 * 1024 * 1024

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WsConfig:
    url: str
    token: str | None = None
    token_in_query: bool = False
    contexts: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    max_frame_bytes: int = 16 * 1024 * 1024
    resume: bool = True
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    open_timeout_s: float = 10.0
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)


def backoff_delay(attempt: int, initial_s: float, max_s: float,
                  rand: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with full jitter: uniform in [cap/2, cap]."""
    cap = min(max_s, initial_s * (2 ** min(attempt, 30)))
    return cap / 2 + rand() * cap / 2


def redact_url(url: str) -> str:
    """The URL with any ``token`` query value hidden, for logs."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [(k, "***" if k.lower() in {"token", "access_token"} else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _with_query_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


FRAME_LIMIT_GROWTH = 16
"""How far past ``max_frame_bytes`` the frame limit may grow after a frame was refused."""
FRAME_TOO_LARGE = "frame_too_large"

MAX_HELD_FRAMES = 2000
"""Frames held while waiting for a resume reply before giving up on it (a server's cache
holds 1,000 events)."""

class WsListener:
    """Runs until :meth:`stop`; every frame is converted and handed to the publisher."""

    def __init__(
        self,
        config: WsConfig,
        converter: BodyConverter,
        publisher: Publisher,
        metrics: Metrics,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config
        self.converter = converter
        self.publisher = publisher
        self.metrics = metrics
        self.clock = clock
        self.sleep = sleep
        self.connected = False
        self.connections = 0
        self.last_sequence: int | None = None
        self._stopping = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._resume_ids: set[str] = set()
        # Frames of a new connection that arrive before its resume reply (see _handle_burst),
        # and for a 1.0 resume how many replayed frames are still to come, and those received.
        self._subscribed = False
        self._holding = False
        self._held: list[tuple[bytes, datetime]] = []
        self._replay_left = 0
        self._replay: list[tuple[bytes, datetime]] = []
        self._pending: set[asyncio.Future[Any]] = set()
        self._closing: set[asyncio.Future[None]] = set()
        # Submitted bursts in order: [highest sequence or None, state]; see _advance.
        self._unacked: deque[list[object]] = deque()
        # The frame limit in force (raised after a refusal) and dead letters of refused
        # frames not yet published.
        self.max_frame_bytes = config.max_frame_bytes
        self._refusals: list[OutgoingMessage] = []

    @property
    def display_url(self) -> str:
        return redact_url(self.config.url)

    def _connect_args(self) -> tuple[str, dict[str, str]]:
        url, headers = self.config.url, {}
        if self.config.token:
            if self.config.token_in_query:
                url = _with_query_token(url, self.config.token)
            else:
                headers["Authorization"] = f"Bearer {self.config.token}"
        return url, headers

    async def run(self) -> None:
        """Connect, listen, reconnect; returns after :meth:`stop`."""
        attempt = 0
        while not self._stopping.is_set():
            self._subscribed = False
            try:
                await self._publish_refusals()
                await self._session()
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed,
                    PublishError) as exc:
                if isinstance(exc, InvalidURI):
                    log.error("websocket url is invalid url=%s", self.display_url)
                    raise
                log.warning("websocket disconnected url=%s error=%s", self.display_url,
                            type(exc).__name__ + (f": {exc}" if str(exc) else ""))
                if (isinstance(exc, ConnectionClosed) and exc.sent is not None
                        and exc.sent.code == CloseCode.MESSAGE_TOO_BIG):
                    self._refused(exc.sent.reason)
            finally:
                self.connected = False
                self._ws = None
                if self._subscribed:
                    # A session that got as far as subscribing resets the backoff, however it
                    # ended: a connection that keeps dropping must not back off to minutes
                    # and outlast the server's resume cache.
                    attempt = 0
            if self._stopping.is_set():
                break
            delay = backoff_delay(attempt, self.config.reconnect_initial_s,
                                  self.config.reconnect_max_s)
            attempt += 1
            self.metrics.inc("ws_reconnects_total")
            log.info("websocket reconnecting in_s=%.2f attempt=%d", delay, attempt)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
        await self._wait_pending()
        with contextlib.suppress(PublishError):
            await self._publish_refusals()
        if self._refusals:
            log.error("%d frame_too_large dead letters were not published (broker "
                      "unavailable at shutdown)", len(self._refusals))

    def _refused(self, reason: str) -> None:
        """A frame over the limit closed the connection: dead-letter the incident and let
        the next connections read a larger frame (see the module docstring)."""
        limit = self.max_frame_bytes
        ceiling = self.config.max_frame_bytes * FRAME_LIMIT_GROWTH
        found = re.search(r"with (\d+) bytes", reason)
        size = int(found.group(1)) if found else 0
        grown = min(ceiling, max(2 * limit, size))
        detail = (f"a frame over the {limit}-byte limit was refused and the connection closed "
                  f"({reason}); its bytes were not read. ")
        if grown > limit:
            detail += (f"Frames up to {grown} bytes are accepted from now on, so a resume "
                       "can deliver it.")
        else:
            detail += (f"The limit is at its ceiling ({FRAME_LIMIT_GROWTH} x [websocket] "
                       "max_frame_bytes): raise max_frame_bytes to receive it.")
        received_at = self.clock()
        letter = DeadLetter.build(f"{received_at.isoformat()} {detail}".encode(), source="ws",
                                  pbx=self.converter.pbx, received_at=received_at,
                                  reason=FRAME_TOO_LARGE, detail=detail)
        letter = dataclasses.replace(letter, raw=b"")
        self._refusals.append(self.converter.encoder.encode_dead_letter(letter))
        self.metrics.inc("dead_letters_total", channel="ws", reason=FRAME_TOO_LARGE)
        log.error("websocket frame refused: %s", detail)
        self.max_frame_bytes = grown

    async def _publish_refusals(self) -> None:
        """Publish the dead letters of refused frames (kept for the next try on failure)."""
        if self._refusals:
            await self.publisher.publish(self._refusals)
            self._refusals = []

    async def stop(self) -> None:
        self._stopping.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    async def _session(self) -> None:
        url, headers = self._connect_args()
        cfg = self.config
        async with connect(
            url,
            additional_headers=headers,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            max_size=self.max_frame_bytes,
            ping_interval=cfg.ping_interval_s,
            ping_timeout=cfg.ping_timeout_s,
            open_timeout=cfg.open_timeout_s,
            compression=None,
            ssl=cfg.ssl_context if url.startswith("wss") else None,
        ) as ws:
            self._ws = ws
            self.connected = True
            self.connections += 1
            log.info("websocket connected url=%s subprotocol=%s", self.display_url,
                     ws.subprotocol)
            await self._command(ws, "session.subscribe", self._subscribe_params())
            self._subscribed = True
            self._forget_failed()  # a resume replays them; without one they are gone anyway
            self._replay_left, self._replay = 0, []
            self._holding, self._held = False, []
            if cfg.resume:
                action_id = await self._command(ws, "session.resume", self._resume_params())
                self._resume_ids.add(action_id)
                self._holding = True
            await self._listen(ws)

    async def _listen(self, ws: ClientConnection) -> None:
        """Read frames in one task, convert and submit them in bursts in this one."""
        frames: list[tuple[bytes, datetime]] = []
        buffered = [0]  # bytes in ``frames``
        arrived = asyncio.Event()
        room = asyncio.Event()
        room.set()
        clock = self.clock

        async def read() -> None:
            try:
                while not self._stopping.is_set():
                    raw = await ws.recv(decode=False)
                    frames.append((raw, clock()))
                    buffered[0] += len(raw)
                    arrived.set()
                    if len(frames) >= MAX_BURST_FRAMES or buffered[0] >= MAX_BURST_BYTES:
                        room.clear()
                        await room.wait()
            finally:
                arrived.set()

        reader = asyncio.create_task(read(), name="ws-reader")
        try:
            while True:
                await arrived.wait()
                arrived.clear()
                if frames:
                    burst = frames[:]
                    frames.clear()
                    buffered[0] = 0
                    room.set()
                    await self._handle_burst(burst)
                elif reader.done():
                    reader.result()  # raises ConnectionClosed & co. once all is handled
                    return
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader

    def _subscribe_params(self) -> dict[str, object]:
        # params must be a non-empty object, or the server rejects the command.
        params: dict[str, object] = {"contexts": list(self.config.contexts)}
        if self.config.events:
            params["events"] = list(self.config.events)
        return params

    def _resume_params(self) -> dict[str, object]:
        return {"last_sequence": self.last_sequence or 0}

    async def _command(self, ws: ClientConnection, action: str,
                       params: dict[str, object]) -> str:
        if action not in LISTENER_ACTIONS:
            raise ValueError(f"a passive listener does not send {action}")
        action_id = f"rwi-etl-{action.rsplit('.', 1)[-1]}-{uuid.uuid4().hex[:12]}"
        await ws.send(json.dumps({"action_id": action_id, "action": action, "params": params}))
        return action_id

    async def _handle(self, raw: bytes) -> None:
        """One frame (as a burst of one)."""
        await self._handle_burst([(raw, self.clock())])

    async def _handle_burst(self, burst: list[tuple[bytes, datetime]]) -> None:
        metrics, convert = self.metrics, self.converter.convert
        limit = self.publisher.max_message_bytes
        metrics.inc("bodies_received_total", len(burst), channel="ws")
        messages: list[OutgoingMessage] = []
        counts: dict[str, int] = {}
        highest: int | None = None
        results: list[tuple[str, Converted]] = []

        def live(frames: list[tuple[bytes, datetime]]) -> None:
            results.extend(("ws", convert(raw, source="ws", received_at=at,
                                          max_message_bytes=limit)) for raw, at in frames)

        # Live frames start with the subscription, before the resume reply; the server's
        # cache, and so a 1.0 replay, ends with them. They are held until the reply: a 1.0
        # replay then stands for them (its alignment with the frames received before the
        # drop must not see them twice); otherwise they are converted, before the reply.
        for raw, received_at in burst:
            if b'"action_id"' in raw and _is_command_reply(raw):
                reply = self._reply(raw)
                if reply is None:
                    if self._holding and not self._resume_ids:  # the resume failed
                        self._holding = False
                        live(self._held)
                        self._held = []
                    continue
                self._holding = False
                replayed = _v1_replay_count(reply)
                if replayed:
                    self._replay_left, self._replay, self._held = replayed, [], []
                    continue
                live(self._held)
                self._held = []
                results.append(("ws_resume", convert(raw, source="ws_resume",
                                                     received_at=received_at,
                                                     max_message_bytes=limit)))
            elif self._holding:
                self._held.append((raw, received_at))
                if len(self._held) >= MAX_HELD_FRAMES:  # no reply is coming
                    log.warning("websocket: no resume reply after %d frames", len(self._held))
                    self._holding = False
                    live(self._held)
                    self._held = []
            elif self._replay_left:
                self._replay.append((raw, received_at))
                self._replay_left -= 1
                if not self._replay_left:
                    log.info("websocket resume replayed frames=%d", len(self._replay))
                    metrics.inc("ws_resumes_total")
                    results += [("ws", c) for c in self.converter.convert_replay(
                        self._replay, source="ws", max_message_bytes=limit)]
                    self._replay = []
            else:
                live([(raw, received_at)])
        for source, converted in results:
            for letter in converted.dead_letters:
                metrics.inc("dead_letters_total", channel="ws", reason=letter.reason)
                log.debug("websocket frame dead-lettered reason=%s id=%s bytes=%d",
                          letter.reason, letter.dead_letter_id, len(letter.raw))
            events = converted.events
            if events:
                counts[source] = counts.get(source, 0) + len(events)
                for event in events:
                    sequence = event.sequence
                    if sequence is not None and (highest is None or sequence > highest):
                        highest = sequence
            if source == "ws_resume":
                metrics.inc("ws_resumes_total")
                log.info("websocket resume replayed events=%d", len(events))
            messages.extend(converted.messages)
        for source, count in counts.items():
            metrics.inc("events_received_total", count, channel=source)
        if not messages:
            return
        entry: list[object] = [highest, None]
        self._unacked.append(entry)
        parts = self._split(messages)
        acks: list[Awaitable[None]] = []
        try:
            for part in parts:
                acks.append(await self._submit(part))
        except BaseException:
            entry[1] = False  # not all handed over: the cursor must not pass this burst
            raise
        ack: asyncio.Future[Any] = (
            asyncio.ensure_future(acks[0]) if len(acks) == 1 else asyncio.gather(*acks))
        self._pending.add(ack)
        ack.add_done_callback(self._delivered(counts, entry))

    def _split(self, messages: list[OutgoingMessage]) -> list[list[OutgoingMessage]]:
        """Parts of at most the in-flight cap (a burst must not overrun it in one go)."""
        cap = self.publisher.max_in_flight_bytes
        parts: list[list[OutgoingMessage]] = []
        current: list[OutgoingMessage] = []
        size = 0
        for message in messages:
            message_size = message.size
            if current and size + message_size > cap:
                parts.append(current)
                current, size = [], 0
            current.append(message)
            size += message_size
        parts.append(current)
        return parts

    async def _submit(self, messages: list[OutgoingMessage]) -> Awaitable[None]:
        """Hand ``messages`` over, retrying only what a retry can cure.

        Blocking (on the cap, or until the producer is connected) stops reading, which
        pushes back through TCP to the PBX instead of dropping anything. An error that is
        not retriable (a message over the publisher's limit) is raised: retrying it would
        stall the connection forever.
        """
        while True:
            try:
                return await self.publisher.submit(messages, block=True)
            except PublishError as exc:
                if not exc.retriable:
                    raise
                log.warning("websocket paused: %s", exc)
                await self.sleep(0.5)

    def _reply(self, raw: bytes) -> dict[str, object] | None:
        """A command reply: log it; returns it only when it is a resume reply to convert."""
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(doc, dict) or not str(doc.get("type", "")).startswith("command_"):
            return None
        action_id = str(doc.get("action_id", ""))
        if doc.get("type") == "command_failed":
            log.warning("websocket command failed action=%s error=%s", doc.get("action"),
                        str(doc.get("error"))[:200])
            self._resume_ids.discard(action_id)
            return None
        if action_id in self._resume_ids:
            self._resume_ids.discard(action_id)
            return doc
        log.info("websocket command completed action=%s", doc.get("action"))
        return None

    def _delivered(
        self, counts: dict[str, int], entry: list[object]
    ) -> Callable[[asyncio.Future[Any]], None]:
        def done(future: asyncio.Future[Any]) -> None:
            self._pending.discard(future)
            error = future.exception() if not future.cancelled() else asyncio.CancelledError()
            entry[1] = error is None
            self._advance()
            if error is None:
                for source, count in counts.items():
                    self.metrics.inc("events_published_total", count, channel=source)
                return
            for source, count in counts.items():
                self.metrics.inc("publish_failures_total", count, channel=source)
            log.error("websocket events not delivered count=%d error=%s; reconnecting to "
                      "replay the PBX's resume cache", sum(counts.values()), error)
            ws = self._ws
            if ws is not None:
                closing = asyncio.ensure_future(ws.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)

        return done

    def _advance(self) -> None:
        """Move ``last_sequence`` over the leading bursts that were all acknowledged.

        A failed burst stays at the head, so a resume asks for it again; bursts after it
        that did arrive are replayed too (their event ids make the copies harmless).
        """
        unacked = self._unacked
        while unacked and unacked[0][1] is True:
            highest = unacked.popleft()[0]
            if isinstance(highest, int) and highest > (self.last_sequence or 0):
                self.last_sequence = highest

    def _forget_failed(self) -> None:
        """Before a resume: failed bursts are replayed by it, stop holding the cursor."""
        self._unacked = deque(e for e in self._unacked if e[1] is not False)
        self._advance()

    async def _wait_pending(self) -> None:
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


def _v1_replay_count(reply: dict[str, object]) -> int:
    """Frames a 1.0 server sends after its ``session.resume`` reply (0 for today's servers,
    whose reply carries the replayed events itself)."""
    data = reply.get("data")
    if not isinstance(data, dict) or "events" in data:
        return 0
    count = data.get("replayed_count")
    return count if isinstance(count, int) and count > 0 else 0


def _is_command_reply(raw: bytes) -> bool:
    """A reply to a command (``type: command_*``); anything else is an event frame, converted
    or dead-lettered like any other, never dropped."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return False
    return isinstance(doc, dict) and str(doc.get("type", "")).startswith("command_")
