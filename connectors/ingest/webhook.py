"""The webhook endpoint RustPBX posts to, plus ``/healthz`` and ``/metrics``.

RustPBX posts one event per request, one request at a time, and never retries; so a 2xx
is given only after the broker acknowledged every message of the body, and anything that
is not safe is answered 503 with ``Retry-After`` (never a 2xx). Status codes:
200 stored; 400 malformed body (stored in the dead-letter topic); 401 bad or missing
credentials; 413 body over the limit; 503 broker unreachable, slow, or in-flight cap full.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from pipelines.ingest import BodyConverter

from .auth import TokenAuth
from .metrics import Metrics
from .publisher import Overloaded, Publisher, PublishError

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

_JSON = "application/json"
_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="rwi-etl", error="invalid_token"'}


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    path: str = "/rwi-events"
    max_body_bytes: int = 1024 * 1024
    retry_after_s: int = 1


class WebhookHandler:
    """Request handlers bound to one converter, publisher and metrics registry."""

    def __init__(
        self,
        converter: BodyConverter,
        publisher: Publisher,
        metrics: Metrics,
        auth: TokenAuth,
        config: WebhookConfig,
        clock: Clock = utc_now,
        status: Callable[[], dict[str, object]] | None = None,
    ) -> None:
        self.converter = converter
        self.publisher = publisher
        self.metrics = metrics
        self.auth = auth
        self.config = config
        self.clock = clock
        self.status = status
        self._retry_after = {"Retry-After": str(config.retry_after_s)}

    def _reject(self, status: int, reason: str, headers: dict[str, str] | None = None,
                **extra: object) -> web.Response:
        self.metrics.inc("rejected_total", channel="webhook", reason=reason)
        body = json.dumps({"status": "error", "reason": reason, **extra}).encode()
        return web.Response(status=status, body=body, content_type=_JSON, headers=headers)

    async def receive(self, request: web.Request) -> web.Response:
        """POST <path>: one RWI body (any dialect) to Kafka, answered after the broker's ack."""
        started = time.monotonic()
        if not self.auth.check(request.headers):
            return self._reject(401, "unauthorized", _UNAUTHORIZED_HEADERS)
        length = request.content_length
        if length is not None and length > self.config.max_body_bytes:
            return self._reject(413, "too_large", limit=self.config.max_body_bytes)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._reject(413, "too_large", limit=self.config.max_body_bytes)
        self.metrics.inc("bodies_received_total", channel="webhook")
        converted = self.converter.convert(raw, source="webhook", received_at=self.clock())
        try:
            await self.publisher.publish(converted.messages)
        except Overloaded as exc:
            log.warning("webhook refused: in-flight cap reached (%s)", exc)
            return self._reject(503, "overloaded", self._retry_after)
        except PublishError as exc:
            log.warning("webhook refused: broker unavailable (%s)", exc)
            return self._reject(503, "broker_unavailable", self._retry_after)
        self.metrics.observe("ack_latency_seconds", time.monotonic() - started,
                             channel="webhook")
        if converted.dead_letters:
            letter = converted.dead_letters[0]
            self.metrics.inc("dead_letters_total", channel="webhook", reason=letter.reason)
            log.debug("webhook body dead-lettered reason=%s id=%s bytes=%d", letter.reason,
                     letter.dead_letter_id, len(raw))
            return self._reject(400, letter.reason, dead_letter_id=letter.dead_letter_id)
        count = len(converted.events)
        self.metrics.inc("events_received_total", count, channel="webhook")
        self.metrics.inc("events_published_total", count, channel="webhook")
        return web.Response(body=b'{"status":"ok","events":%d}' % count, content_type=_JSON)

    async def healthz(self, request: web.Request) -> web.Response:
        """200 when the producer is connected and delivering, 503 otherwise."""
        ready = self.publisher.ready
        body: dict[str, object] = {
            "status": "ok" if ready else "unavailable",
            "broker": "ready" if ready else "not ready",
            "in_flight_bytes": self.publisher.in_flight_bytes,
        }
        if self.status is not None:
            body.update(self.status())
        return web.Response(status=200 if ready else 503, body=json.dumps(body).encode(),
                            content_type=_JSON)

    async def metrics_text(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render().encode(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def build_app(handler: WebhookHandler) -> web.Application:
    """The aiohttp application: the webhook path, ``/healthz`` and ``/metrics``."""
    # Bodies above the limit fail in request.read() even when sent chunked, without a length.
    app = web.Application(client_max_size=handler.config.max_body_bytes)
    app.router.add_post(handler.config.path, handler.receive)
    app.router.add_get("/healthz", handler.healthz)
    app.router.add_get("/metrics", handler.metrics_text)
    return app
