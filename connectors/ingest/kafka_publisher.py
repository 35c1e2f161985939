"""``KafkaPublisher``: one idempotent aiokafka producer (acks=all) behind the in-flight cap.

The producer is (re)connected in the background, so the webhook can answer 503 while the
broker is away instead of refusing connections. An idempotent aiokafka producer never
expires a batch it has sent: it retries until the broker is back, so a delivery that timed
out here (and was answered 503) usually still lands; Kafka may then hold it although the
PBX was told otherwise, and the event id makes that copy harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.codec import has_lz4, has_snappy, has_zstd
from aiokafka.errors import KafkaError

from pipelines.encode import OutgoingMessage
from pipelines.errors import ConfigError
from pipelines.settings import IngestSettings
from pipelines.topics import ensure_topics

from .publisher import AckListener, BrokerUnavailable, GatedPublisher

log = logging.getLogger(__name__)

_CODECS = {"zstd": has_zstd, "lz4": has_lz4, "snappy": has_snappy, "gzip": lambda: True}


def resolve_compression(choice: str) -> str | None:
    """The aiokafka ``compression_type`` for a setting: ``auto`` prefers lz4, then gzip."""
    choice = choice.lower()
    if choice == "none":
        return None
    if choice == "auto":
        return "lz4" if has_lz4() else "gzip"
    if choice not in _CODECS:
        raise ConfigError(f"ingest.compression must be auto, none or one of {sorted(_CODECS)}")
    if not _CODECS[choice]():
        raise ConfigError(f"compression {choice} needs the cramjam package (pip install cramjam)")
    return choice


class KafkaPublisher(GatedPublisher):
    """Publishes to Kafka; ``start`` returns at once and connects in the background."""

    def __init__(
        self,
        bootstrap: str,
        settings: IngestSettings,
        *,
        topics: Iterable[str] = (),
        partitions: int = 3,
        replication_factor: int = 1,
        retention_ms: int = 7 * 24 * 3600 * 1000,
        on_ack: AckListener | None = None,
        client_id: str = "rwi-etl-ingest",
    ) -> None:
        super().__init__(
            max_in_flight_bytes=settings.max_in_flight_bytes,
            ack_timeout_s=settings.ack_timeout_s,
            degraded_ack_timeout_s=settings.degraded_ack_timeout_s,
            on_ack=on_ack,
        )
        self.bootstrap = bootstrap
        self.settings = settings
        self.topics = list(topics)
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.retention_ms = retention_ms
        self.client_id = client_id
        self.compression = resolve_compression(settings.compression)
        self.reconnects = 0
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected_event = asyncio.Event()

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            enable_idempotence=True,
            acks="all",
            compression_type=self.compression,
            # One request per broker is in flight at a time (idempotence), so batches fill
            # by themselves while it is out; a linger would only add to every ack's latency.
            linger_ms=self.settings.linger_ms,
            max_batch_size=self.settings.max_batch_bytes,
            max_request_size=max(1024 * 1024, 2 * self.settings.max_batch_bytes),
            request_timeout_ms=self.settings.request_timeout_ms,
        )

    async def start(self) -> None:
        """Begin connecting (and creating topics); see :meth:`wait_connected`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="kafka-publisher")

    async def wait_connected(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self._connected_event.wait()
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        delay = 0.25
        while True:
            try:
                await self._connect()
                break
            except ConfigError:
                raise
            except Exception as exc:  # any failure to reach the cluster: keep trying
                log.warning("kafka not ready bootstrap=%s retry_in_s=%.1f error=%s",
                            self.bootstrap, delay, exc)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 10.0)
        await self._watch()

    async def _connect(self) -> None:
        if self.settings.ensure_topics and self.topics:
            created = await ensure_topics(self.bootstrap, self.topics, self.partitions,
                                          self.replication_factor, self.retention_ms)
            if created:
                log.info("topics created count=%d bootstrap=%s", len(created), self.bootstrap)
        producer = self._new_producer()
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self._producer = producer
        self._connected = True
        self._connected_event.set()
        log.info("kafka producer connected bootstrap=%s compression=%s", self.bootstrap,
                 self.compression or "none")

    async def _watch(self) -> None:
        # While deliveries fail, probe the cluster so /healthz recovers without traffic.
        while True:
            await asyncio.sleep(1.0)
            producer = self._producer
            if producer is None or not self._failing:
                continue
            try:
                async with asyncio.timeout(2.0):
                    ok = await producer.client.fetch_all_metadata()
                if ok is not None and ok.brokers():
                    log.info("kafka answers metadata again bootstrap=%s", self.bootstrap)
                    self.reconnects += 1
                    self._mark_failing(False)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.debug("kafka probe failed: %s", exc)

    async def _send(self, message: OutgoingMessage) -> asyncio.Future[object]:
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("not connected to the broker")
        future: asyncio.Future[object] = await producer.send(
            message.topic, message.value, key=message.key, headers=message.headers
        )
        return future

    async def close(self, timeout_s: float) -> None:
        """Drain what is in flight (bounded), then stop the producer."""
        if self._messages:
            log.info("draining in_flight_messages=%d in_flight_bytes=%d", self._messages,
                     self._bytes)
        drained = await self.wait_idle(timeout_s)
        if not drained:
            log.error("shutdown with undelivered messages count=%d bytes=%d (none of them was "
                      "acknowledged to a sender)", self._messages, self._bytes)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        producer, self._producer = self._producer, None
        self._connected = False
        if producer is not None:
            try:
                async with asyncio.timeout(max(1.0, timeout_s if drained else 1.0)):
                    await producer.stop()
            except (TimeoutError, KafkaError) as exc:
                log.warning("kafka producer did not stop cleanly: %s", exc or "timeout")
