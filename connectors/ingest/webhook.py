"""The webhook endpoint RustPBX posts to, plus ``/healthz`` and ``/metrics``.

RustPBX posts one event per request, one request at a time, and never retries; so a 2xx
is given only after the broker acknowledged every message of the body, and anything that
is not safe is answered 503 with ``Retry-After`` (never a 2xx). Status codes:
200 stored; 400 malformed body (stored in the dead-letter topic); 401 bad or missing
credentials; 413 ``too_large``: body over ``max_body_bytes``, refused unread (the limit
keeps memory bounded, so nothing is stored); 413 ``event_too_large``: the body was read
but an event of it encodes to more than the publisher's largest message, so that event is
in the dead-letter topic (acknowledged) and the body's other events were stored, the
answer naming how many and the dead-letter ids; 503 broker unreachable, slow, or
in-flight cap full.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from pipelines.ingest import EVENT_TOO_LARGE, BodyConverter

from .auth import TokenAuth
from .metrics import Metrics
from .publisher import MessageTooLarge, Overloaded, Publisher, PublishError

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
        accepting: Callable[[], bool] | None = None,
    ) -> None:
        self.converter = converter
        # False while the service cannot accept events yet (restoring event identities).
        self.accepting = accepting
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
            return self._too_large(length)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(None)
        self.metrics.inc("bodies_received_total", channel="webhook")
        if self.accepting is not None and not self.accepting():
            return self._reject(503, "starting", self._retry_after)
        publisher = self.publisher
        converted = self.converter.convert(raw, source="webhook", received_at=self.clock(),
                                           max_message_bytes=publisher.max_message_bytes)
        try:
            await publisher.publish(converted.messages)
        except Overloaded as exc:
            log.warning("webhook refused: in-flight cap reached (%s)", exc)
            return self._reject(503, "overloaded", self._retry_after)
        except MessageTooLarge as exc:  # the converter keeps to the limit; never retry this
            log.error("webhook body not stored: %s", exc)
            return self._reject(413, EVENT_TOO_LARGE, limit=publisher.max_message_bytes)
        except PublishError as exc:
            log.warning("webhook refused: broker unavailable (%s)", exc)
            return self._reject(503, "broker_unavailable", self._retry_after)
        self.metrics.observe("ack_latency_seconds", time.monotonic() - started,
                             channel="webhook")
        count = len(converted.events)
        if count:
            self.metrics.inc("events_received_total", count, channel="webhook")
            self.metrics.inc("events_published_total", count, channel="webhook")
        letters = converted.dead_letters
        if letters:
            for letter in letters:
                self.metrics.inc("dead_letters_total", channel="webhook", reason=letter.reason)
                log.debug("webhook body dead-lettered reason=%s id=%s bytes=%d",
                          letter.reason, letter.dead_letter_id, len(raw))
            if letters[0].reason == EVENT_TOO_LARGE:
                return self._reject(413, EVENT_TOO_LARGE, events=count,
                                    dead_letter_ids=[x.dead_letter_id for x in letters],
                                    limit=publisher.max_message_bytes)
            return self._reject(400, letters[0].reason, dead_letter_id=letters[0].dead_letter_id)
        return web.Response(body=b'{"status":"ok","events":%d}' % count, content_type=_JSON)

    def _too_large(self, length: int | None) -> web.Response:
        log.warning("webhook refused: body of %s bytes is over the limit of %d (not read, "
                    "not stored)", length if length is not None else "more than the limit",
                    self.config.max_body_bytes)
        return self._reject(413, "too_large", limit=self.config.max_body_bytes)

    async def healthz(self, request: web.Request) -> web.Response:
        """200 when the producer is connected and delivering and the service accepts
        events, 503 otherwise."""
        ready = self.publisher.ready and (self.accepting is None or self.accepting())
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
