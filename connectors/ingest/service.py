"""The ingest service: one converter and one publisher shared by the webhook and the WebSocket.

Start order: publisher (connects and ensures topics in the background), webhook listener,
WebSocket listener. Stop order is the reverse, and drains: the webhook stops accepting and
waits for requests already received (each waits for its broker ack), the WebSocket client
closes, then the producer delivers what it still holds before it disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from pipelines.catalog import all_topics
from pipelines.errors import BrokerError, ConfigError
from pipelines.identity_restore import restore_occurrences
from pipelines.ingest import BodyConverter
from pipelines.settings import Settings

from .auth import TokenAuth
from .kafka_publisher import KafkaPublisher
from .metrics import Metrics
from .publisher import AckListener, GatedPublisher
from .runtime import tune_garbage_collector
from .webhook import Clock, WebhookConfig, WebhookHandler, build_app, utc_now
from .wsclient import WsConfig, WsListener

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Channels:
    """Which feeds to run: a webhook listen address and/or a PBX WebSocket URL."""

    webhook: tuple[str, int] | None
    ws_url: str | None


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8088`` for IPv6) to a (host, port) pair."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"listen address must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def server_ssl_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """A TLS context for the webhook listener when a certificate is configured."""
    if cert is None and key is None:
        return None
    if cert is None:
        raise ConfigError("ingest.tls_key_file is set but ingest.tls_cert_file is not")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key) if key else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the webhook TLS certificate {cert}: {exc}") from exc
    return context


def client_ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the WebSocket CA file {ca_file}: {exc}") from exc
    return context


class IngestService:
    """Runs the configured channels until :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        channels: Channels,
        *,
        publisher: GatedPublisher | None = None,
        clock: Clock = utc_now,
    ) -> None:
        if channels.webhook is None and channels.ws_url is None:
            raise ConfigError("nothing to ingest: give --webhook HOST:PORT and/or --ws URL")
        self.settings = settings
        self.channels = channels
        self.clock = clock
        self.metrics = Metrics()
        self.converter = BodyConverter(settings.pbx, settings.topic_prefix)
        self.publisher = publisher if publisher is not None else self._kafka_publisher()
        if self.publisher.on_ack is None:
            self.publisher.on_ack = self._on_ack()
        self._runner: web.AppRunner | None = None
        self._accepting = False
        self._restoring: asyncio.Task[None] | None = None
        self._ws: WsListener | None = None
        self._ws_task: asyncio.Task[None] | None = None
        self._register_gauges()

    def _kafka_publisher(self) -> KafkaPublisher:
        kafka = self.settings.kafka
        return KafkaPublisher(
            kafka.bootstrap, self.settings.ingest, topics=all_topics(self.settings.topic_prefix),
            partitions=kafka.partitions, replication_factor=kafka.replication_factor,
            retention_ms=kafka.retention_ms,
        )

    def _on_ack(self) -> AckListener:
        metrics = self.metrics

        def on_ack(count: int, size: int, seconds: float, error: BaseException | None) -> None:
            if error is None:
                metrics.inc("messages_acked_total", count)
            else:
                metrics.inc("messages_failed_total", count)

        metrics.counter("messages_acked_total",
                        "Kafka messages (events and dead letters) acknowledged by the broker.")
        metrics.counter("messages_failed_total",
                        "Kafka messages whose delivery failed or was abandoned.")
        return on_ack

    def _register_gauges(self) -> None:
        m, p = self.metrics, self.publisher
        m.gauge("in_flight_bytes", "Bytes handed to the producer, not yet acknowledged.",
                lambda: p.in_flight_bytes)
        m.gauge("in_flight_messages", "Messages handed to the producer, not yet acknowledged.",
                lambda: p.in_flight_messages)
        m.gauge("in_flight_cap_bytes", "The configured cap on in-flight bytes.",
                lambda: p.max_in_flight_bytes)
        m.gauge("broker_ready", "1 when the producer is connected and delivering.",
                lambda: 1 if p.ready else 0)
        m.gauge("ws_connected", "1 while the WebSocket to the PBX is open.",
                lambda: 1 if self._ws is not None and self._ws.connected else 0)

    @property
    def webhook_address(self) -> tuple[str, int] | None:
        """The bound (host, port), useful when listening on port 0."""
        if self._runner is None or not self._runner.addresses:
            return None
        host, port = self._runner.addresses[0][:2]
        return str(host), int(port)

    def status(self) -> dict[str, object]:
        out: dict[str, object] = {"pbx": self.settings.pbx,
                                  "in_flight_messages": self.publisher.in_flight_messages}
        if self._ws is not None:
            out["websocket"] = "connected" if self._ws.connected else "disconnected"
        if not self._accepting:
            out["accepting"] = "not yet: restoring event identities from Kafka"
        return out

    async def wait_accepting(self, timeout_s: float) -> bool:
        """Wait until events are accepted (identities restored); False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                while not self._accepting:
                    if self._restoring is not None and self._restoring.done():
                        self._restoring.result()  # raises what ended it
                    await asyncio.sleep(0.05)
        except TimeoutError:
            return False
        return True

    async def start(self) -> None:
        start = getattr(self.publisher, "start", None)
        if start is not None:
            await start()
        if self.channels.webhook is not None:
            await self._start_webhook(*self.channels.webhook)
        if isinstance(self.publisher, KafkaPublisher):
            # Events are accepted (the webhook answers 503 until then, the WebSocket is not
            # opened) once the identities are restored, which needs the broker.
            self._restoring = asyncio.create_task(self._restore_then_accept(),
                                                  name="restore-identities")
        else:
            self._open()

    async def _restore_then_accept(self) -> None:
        try:
            await self._restore_identities()
        except Exception:
            log.exception("restoring event identities failed; events are not accepted")
            raise
        self._open()

    def _open(self) -> None:
        self._accepting = True
        if self.channels.ws_url is not None:
            self._start_ws(self.channels.ws_url)

    async def _restore_identities(self) -> None:
        """Read the tail of the topics back into the occurrence table before accepting
        events (pipelines.identity_restore); waits for the broker, retrying."""
        limit = self.settings.ingest.restore_identity_messages
        if limit <= 0:
            return
        topics = all_topics(self.settings.topic_prefix)
        delay = self.settings.ingest.reconnect_initial_s
        while True:
            try:
                summary = await restore_occurrences(
                    self.settings.kafka.bootstrap, topics, self.converter.normalizer.tracker,
                    max_per_partition=limit)
            except BrokerError as exc:
                log.warning("cannot restore event identities yet (%s); retrying in %.1fs",
                            exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.ingest.reconnect_max_s)
                continue
            log.info("restored %d event identities (%d in path histories) from %d messages "
                     "of %d partitions in %.1fs", summary.restored, summary.history,
                     summary.messages, summary.partitions, summary.seconds)
            return

    async def _start_webhook(self, host: str, port: int) -> None:
        hook, ingest = self.settings.webhook, self.settings.ingest
        auth = TokenAuth(hook.token, hook.header)
        if not auth.enabled:
            log.warning("webhook has no token: anyone who can reach it can post events")
        handler = WebhookHandler(
            self.converter, self.publisher, self.metrics, auth,
            WebhookConfig(hook.path, hook.max_body_bytes, ingest.retry_after_s),
            clock=self.clock, status=self.status, accepting=lambda: self._accepting,
        )
        tls = server_ssl_context(ingest.tls_cert_file, ingest.tls_key_file)
        self._runner = web.AppRunner(
            build_app(handler), shutdown_timeout=ingest.drain_timeout_s,
            access_log=logging.getLogger("aiohttp.access") if ingest.access_log else None,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=tls, backlog=1024)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from exc
        bound = self.webhook_address or (host, port)
        log.info("webhook listening url=%s://%s:%d%s auth=%s", "https" if tls else "http",
                 bound[0], bound[1], hook.path, auth.header if auth.enabled else "none")

    def _start_ws(self, url: str) -> None:
        ws, ingest = self.settings.websocket, self.settings.ingest
        config = WsConfig(
            url=url, token=ws.token, token_in_query=ws.token_in_query,
            contexts=tuple(ws.contexts), events=tuple(ws.events),
            ping_interval_s=ws.ping_interval_s or None,
            ping_timeout_s=ingest.ping_timeout_s or None,
            max_frame_bytes=ws.max_frame_bytes, resume=ingest.ws_resume,
            reconnect_initial_s=ingest.reconnect_initial_s,
            reconnect_max_s=ingest.reconnect_max_s,
            ssl_context=client_ssl_context(ingest.ws_ca_file) if url.startswith("wss") else None,
        )
        self._ws = WsListener(config, self.converter, self.publisher, self.metrics, self.clock)
        self._ws_task = asyncio.create_task(self._ws.run(), name="ws-listener")

    async def stop(self) -> None:
        """Stop accepting, drain what was accepted, disconnect."""
        drain = self.settings.ingest.drain_timeout_s
        if self._restoring is not None and not self._restoring.done():
            self._restoring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restoring
        if self._runner is not None:
            await self._runner.cleanup()  # waits for requests in progress (and their acks)
            self._runner = None
        if self._ws is not None and self._ws_task is not None:
            await self._ws.stop()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                async with asyncio.timeout(drain):
                    await self._ws_task
        await self.publisher.close(drain)
        log.info("ingest stopped published=%d dead_letters=%d rejected=%d",
                 self.metrics.total("events_published_total"),
                 self.metrics.total("dead_letters_total"), self.metrics.total("rejected_total"))

    async def run_until_signalled(self) -> None:
        """Start, then stop gracefully on SIGTERM or SIGINT."""
        tune_garbage_collector()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        try:
            await self.start()
            waiters: list[asyncio.Future[Any]] = [asyncio.create_task(stopping.wait())]
            if self._ws_task is not None:
                waiters.append(self._ws_task)
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if self._ws_task is not None and self._ws_task.done() and not stopping.is_set():
                self._ws_task.result()  # the listener gave up (invalid URL): surface it
            log.info("shutting down: draining accepted events")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.stop()
