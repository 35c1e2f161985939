"""``KafkaPublisher``: one idempotent aiokafka producer (acks=all) behind the in-flight cap.

The producer is (re)connected in the background, so the webhook can answer 503 while the
broker is away instead of refusing connections. An idempotent aiokafka producer never
expires a batch it has sent: it retries until the broker is back, so a delivery that timed
out here (and was answered 503) usually still lands; Kafka may then hold it although the
PBX was told otherwise, and the event id makes that copy harmless.

Many messages submitted at once (a burst of WebSocket frames) skip aiokafka's per-message
``send``: they queue here, and one task packs them into one record batch per partition
(``create_batch``/``send_batch``), in order, while earlier batches are still on the wire.
A single message while nothing else is in flight (a webhook request at a time) goes
through ``send`` directly, the shortest path to the broker; concurrent requests share
the queue, and so their batches. Either way a submission's future
resolves only when every message of it is acknowledged.

Only batches of several messages are compressed. A lone record gains little from it, and
the broker decompresses every compressed batch to validate it: on a loaded machine an
uncompressed lone record was acknowledged up to twice as fast, which is what a webhook
sender posting one event at a time waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
from collections.abc import Callable, Iterable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.codec import has_lz4, has_snappy, has_zstd
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

from pipelines.encode import OutgoingMessage
from pipelines.errors import ConfigError
from pipelines.settings import IngestSettings
from pipelines.topics import ensure_topics

from .publisher import AckListener, BrokerUnavailable, GatedPublisher, Track

log = logging.getLogger(__name__)

_CODECS = {"zstd": has_zstd, "lz4": has_lz4, "snappy": has_snappy, "gzip": lambda: True}
_CODEC_IDS = {"zstd": DefaultRecordBatch.CODEC_ZSTD, "lz4": DefaultRecordBatch.CODEC_LZ4,
              "snappy": DefaultRecordBatch.CODEC_SNAPPY, "gzip": DefaultRecordBatch.CODEC_GZIP}
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_HASH_CACHE_MAX = 65_536
_FRAMING_ROOM = 16 * 1024


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of a key, as ``aiokafka.partitioner.murmur2`` and the Java client
    compute it, reading 4-byte words with one ``struct`` call instead of byte by byte."""
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    if words:
        for k in struct.unpack_from(f"<{words}I", data):
            k = (k * _M) & _MASK
            k ^= k >> 24
            h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    rest = length & 3
    if rest:
        tail = length & ~3
        if rest == 3:
            h ^= data[tail + 2] << 16
        if rest >= 2:
            h ^= data[tail + 1] << 8
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


class _Ticket:
    """One queued submission: its future resolves when all its messages are acknowledged."""

    __slots__ = ("future", "remaining")

    def __init__(self, future: asyncio.Future[object], remaining: int) -> None:
        self.future = future
        self.remaining = remaining

    def settle(self, count: int, error: BaseException | None) -> None:
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(BrokerUnavailable(f"delivery failed: {error!r}"))
            return
        self.remaining -= count
        if self.remaining <= 0:
            self.future.set_result(None)


def max_request_size(settings: IngestSettings) -> int:
    """The producer's ``max_request_size``: Kafka's 1 MiB, or two full batches if larger."""
    return max(1024 * 1024, 2 * settings.max_batch_bytes)


def max_message_bytes(settings: IngestSettings) -> int:
    """The largest message published: the request size less room for framing (record and
    batch headers, what compression adds to data that does not compress). Anything larger
    is dead-lettered by the converter instead of being refused by the producer forever."""
    return max_request_size(settings) - _FRAMING_ROOM


def resolve_compression(choice: str) -> str | None:
    """The aiokafka ``compression_type`` for a setting: ``auto`` prefers zstd, then lz4,
    then gzip.

    zstd because aiokafka compresses lz4 at level 9 (high compression), which on record
    batches of ingest events is about four times slower than zstd at its level 3 and
    compresses less: on one ingest process it was the largest cost after conversion.
    """
    choice = choice.lower()
    if choice == "none":
        return None
    if choice == "auto":
        if has_zstd():
            return "zstd"
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
            max_message_bytes=max_message_bytes(settings),
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
        # Bulk path: queued (message, ticket) pairs and the task that ships them in order.
        self._queue: list[tuple[OutgoingMessage, _Ticket]] = []
        self._queued = asyncio.Event()
        self._shipping = False
        self._pump_task: asyncio.Task[None] | None = None
        self._partitions: dict[str, list[int]] = {}
        self._hashes: dict[bytes, int] = {}

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            enable_idempotence=True,
            acks="all",
            # Lone records go uncompressed; _new_batch compresses batches of several.
            compression_type=None,
            # One request per broker is in flight at a time (idempotence), so batches fill
            # by themselves while it is out; a linger would only add to every ack's latency.
            linger_ms=self.settings.linger_ms,
            max_batch_size=self.settings.max_batch_bytes,
            max_request_size=max_request_size(self.settings),
            request_timeout_ms=self.settings.request_timeout_ms,
        )

    async def start(self) -> None:
        """Begin connecting (and creating topics); see :meth:`wait_connected`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="kafka-publisher")
        if self._pump_task is None:
            self._pump_task = asyncio.create_task(self._pump(), name="kafka-publisher-batches")

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
        # Partition counts can change; forget them whenever metadata is refreshed.
        producer.client.cluster.add_listener(lambda _cluster: self._partitions.clear())
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

    async def _enqueue(
        self, messages: Sequence[OutgoingMessage], sizes: Sequence[int], track: Track
    ) -> None:
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("not connected to the broker")
        if len(messages) == 1 and self._messages <= 1 and not self._queue and not self._shipping:
            # Alone in flight (a webhook request at a time): the shortest path to the broker.
            # Nothing of ours waits ahead of it, so going straight to the producer keeps order.
            track(await self._send(messages[0]), 1, sizes[0])
            return
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        ticket = _Ticket(future, len(messages))
        self._queue.extend([(message, ticket) for message in messages])
        self._queued.set()
        track(future, len(messages), sum(sizes))

    async def _pump(self) -> None:
        """Ship queued messages in submission order, as many per record batch as fit."""
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._queue:
                entries, self._queue = self._queue, []
                self._shipping = True
                try:
                    await self._ship(entries)
                except Exception as exc:  # _ship failed what it held; keep pumping
                    log.warning("kafka batch not handed to the producer: %r", exc)
                finally:
                    self._shipping = False

    @staticmethod
    def _fail(entries: Sequence[tuple[OutgoingMessage, _Ticket]], error: BaseException) -> None:
        for _, ticket in entries:
            ticket.settle(1, error)

    def _partition_of(self, key: bytes, partitions: list[int]) -> int:
        """The default partitioner's choice (murmur2 of the key), memoized per key."""
        hashes = self._hashes
        digest = hashes.get(key)
        if digest is None:
            if len(hashes) >= _HASH_CACHE_MAX:
                hashes.clear()
            digest = hashes[key] = murmur2(key) & 0x7FFFFFFF
        return partitions[digest % len(partitions)]

    async def _ship(self, entries: list[tuple[OutgoingMessage, _Ticket]]) -> None:
        """Hand ``entries`` to the producer; on any error fail those it does not hold yet."""
        ordered: list[tuple[tuple[str, int], list[tuple[OutgoingMessage, _Ticket]]]] = []
        index = start = 0  # ordered[index][1][start:] and every later group are not sent yet
        try:
            producer = self._producer
            if producer is None:
                raise BrokerUnavailable("not connected to the broker")
            groups: dict[tuple[str, int], list[tuple[OutgoingMessage, _Ticket]]] = {}
            for entry in entries:
                topic = entry[0].topic
                partitions = self._partitions.get(topic)
                if partitions is None:
                    found = await producer.partitions_for(topic)
                    partitions = self._partitions[topic] = sorted(found)
                tp = (topic, self._partition_of(entry[0].key, partitions))
                group = groups.get(tp)
                if group is None:
                    groups[tp] = [entry]
                else:
                    group.append(entry)
            ordered = list(groups.items())
            for index, ((topic, partition), group) in enumerate(ordered):  # noqa: B007
                start = 0
                while start < len(group):
                    batch = self._new_batch(producer, len(group) - start)
                    end = start
                    for message, _ in group[start:]:
                        if batch.append(key=message.key, value=message.value, timestamp=None,
                                        headers=message.headers) is None:
                            break  # full; the first message always fits
                        end += 1
                    future = await producer.send_batch(batch, topic, partition=partition)
                    future.add_done_callback(self._settler(group[start:end]))
                    start = end
        except BaseException as exc:
            if ordered:
                unsent = ordered[index][1][start:] + [
                    entry for _, later in ordered[index + 1:] for entry in later]
            else:
                unsent = entries
            self._fail(unsent, exc if isinstance(exc, Exception) else
                       BrokerUnavailable("publisher stopped"))
            raise

    def _new_batch(self, producer: AIOKafkaProducer, messages: int) -> BatchBuilder:
        """An empty record batch for up to ``messages`` messages: compressed with the
        configured codec when it will hold several, else plain (see the module docstring)."""
        if messages > 1 and self.compression is not None:
            return BatchBuilder(self.settings.max_batch_bytes, _CODEC_IDS[self.compression])
        batch: BatchBuilder = producer.create_batch()
        return batch

    @staticmethod
    def _settler(
        entries: Sequence[tuple[OutgoingMessage, _Ticket]],
    ) -> Callable[[asyncio.Future[object]], None]:
        counts: dict[_Ticket, int] = {}
        for _, ticket in entries:
            counts[ticket] = counts.get(ticket, 0) + 1

        def settle(future: asyncio.Future[object]) -> None:
            error = asyncio.CancelledError() if future.cancelled() else future.exception()
            for ticket, count in counts.items():
                ticket.settle(count, error)

        return settle

    async def close(self, timeout_s: float) -> None:
        """Drain what is in flight (bounded), then stop the producer."""
        if self._messages:
            log.info("draining in_flight_messages=%d in_flight_bytes=%d", self._messages,
                     self._bytes)
        drained = await self.wait_idle(timeout_s)
        if not drained:
            log.error("shutdown with undelivered messages count=%d bytes=%d (none of them was "
                      "acknowledged to a sender)", self._messages, self._bytes)
        for task in (self._task, self._pump_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        queued, self._queue = self._queue, []
        self._fail(queued, BrokerUnavailable("publisher closed"))
        producer, self._producer = self._producer, None
        self._connected = False
        if producer is not None:
            try:
                async with asyncio.timeout(max(1.0, timeout_s if drained else 1.0)):
                    await producer.stop()
            except (TimeoutError, KafkaError) as exc:
                log.warning("kafka producer did not stop cleanly: %s", exc or "timeout")
