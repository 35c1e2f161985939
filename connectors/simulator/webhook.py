"""Webhook delivery the way RustPBX posts: one request in flight, keep-alive, no retries.

A slow endpoint backs up the 512-slot broadcast channel; with ``lag_drop`` the oldest
events are then skipped (tokio's ``Lagged``), otherwise the simulation waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

import aiohttp

log = logging.getLogger(__name__)
CHANNEL_SLOTS = 512


@dataclass(slots=True)
class WebhookStats:
    """What happened to the bodies handed to one sender."""

    ok: int = 0
    non_2xx: int = 0
    errors: int = 0
    dropped: int = 0
    max_in_flight: int = 0


class WebhookSender:
    """One PBX's webhook handler: a strictly sequential POST loop behind a bounded channel."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None,
                 timeout_ms: int = 5000, lag_drop: bool = False) -> None:
        self.url = url
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        self.lag_drop = lag_drop
        self.stats = WebhookStats()
        self._ring: deque[str] = deque()
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def put(self, body: str) -> None:
        """Queue one body; waits for room unless lag dropping is on."""
        if len(self._ring) >= CHANNEL_SLOTS:
            if self.lag_drop:
                self._ring.popleft()
                self.stats.dropped += 1
            else:
                self._space.clear()
                while len(self._ring) >= CHANNEL_SLOTS:
                    await self._space.wait()
                    self._space.clear()
        self._ring.append(body)
        self._ready.set()

    async def close(self) -> WebhookStats:
        """Send what is queued, then stop."""
        self._closing = True
        self._ready.set()
        if self._task is not None:
            await self._task
        return self.stats

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=1, keepalive_timeout=90)
        async with aiohttp.ClientSession(connector=connector, timeout=self.timeout) as session:
            while True:
                if not self._ring:
                    if self._closing:
                        return
                    self._ready.clear()
                    await self._ready.wait()
                    continue
                body = self._ring.popleft()
                self._space.set()
                await self._post(session, body)

    async def _post(self, session: aiohttp.ClientSession, body: str) -> None:
        self._in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self._in_flight)
        try:
            async with session.post(self.url, data=body.encode("utf-8"),
                                    headers=self.headers) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    self.stats.ok += 1
                else:
                    self.stats.non_2xx += 1
                    log.warning("webhook answered %s", resp.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.stats.errors += 1
            log.warning("webhook post failed: %s", type(exc).__name__)
        finally:
            self._in_flight -= 1
