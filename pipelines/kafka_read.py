"""Bounded Kafka reads: each topic-partition from the lake's offset to the end seen at start.

No consumer group is used: partitions are assigned by hand and positioned with ``seek``, so
correctness never depends on committed group offsets (the lake keeps its own). The end
offsets are captured once, when a run starts, so a run is finite however fast producers
write, and memory is bounded by the batch limits whatever the backlog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import accumulate

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from pipelines.errors import BrokerError, RwiEtlError

logger = logging.getLogger(__name__)


class OffsetError(RwiEtlError):
    """The lake's offset is past the end of the partition: the topic was recreated."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """How much one batch may hold, and how the consumer fetches."""

    max_batch_messages: int = 100_000
    max_batch_bytes: int = 64 * 1024 * 1024
    max_partition_fetch_bytes: int = 8 * 1024 * 1024
    fetch_max_bytes: int = 64 * 1024 * 1024
    stall_timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class PartitionRange:
    """Offsets ``[start, end)`` of one partition to read in this run."""

    topic: str
    partition: int
    start: int
    end: int
    requested: int  # the lake's next offset; ``start`` is later when retention removed some

    @property
    def pending(self) -> int:
        return max(self.end - self.start, 0)

    @property
    def skipped(self) -> int:
        """Offsets that retention deleted before the lake got them."""
        return max(self.start - self.requested, 0)


@dataclass(slots=True)
class MessageBatch:
    """Consecutive messages of one partition; ``first``/``last`` are the batch's offset range."""

    topic: str
    partition: int
    first: int
    last: int
    offsets: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)  # ms since the epoch
    values: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)


async def open_consumer(bootstrap: str, limits: ReadLimits) -> AIOKafkaConsumer:
    """A started consumer without a group (manual assignment only)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=limits.max_partition_fetch_bytes,
        fetch_max_bytes=limits.fetch_max_bytes,
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    return consumer


async def stop_consumer(consumer: AIOKafkaConsumer, timeout_s: float = 10.0) -> None:
    """Stop the consumer, even when aiokafka's fetch task swallows its first cancellation.

    Cancelling the fetch task while it is tearing down an old assignment suppresses the
    CancelledError and leaves it waiting for an assignment that never comes; a second
    cancellation ends it. The last assignment is therefore left in place until here.
    """
    stopping = asyncio.ensure_future(consumer.stop())
    done, _ = await asyncio.wait({stopping}, timeout=timeout_s)
    if not done:
        logger.warning("the Kafka consumer did not stop in %.0fs; cancelling its fetch task",
                       timeout_s)
        for task in asyncio.all_tasks():
            if "_fetch_requests_routine" in getattr(task.get_coro(), "__qualname__", ""):
                task.cancel()
    await stopping


async def topic_partitions(bootstrap: str, topics: Iterable[str],
                           timeout_s: float = 30.0) -> list[TopicPartition]:
    """Every partition of those ``topics`` that exist (missing topics are left out)."""
    wanted = sorted(set(topics))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap,
                                request_timeout_ms=int(timeout_s * 1000))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        present = [t for t in wanted if t in existing]
        described = await admin.describe_topics(present) if present else []
    except KafkaError as exc:
        raise BrokerError(f"cannot list the topics on {bootstrap}: {exc}") from exc
    finally:
        await admin.close()
    return sorted(
        (TopicPartition(d["topic"], int(p["partition"]))
         for d in described if d.get("error_code") == 0 for p in d.get("partitions") or ()),
        key=lambda tp: (tp.topic, tp.partition),
    )


async def plan_ranges(
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition],
    next_offsets: Mapping[tuple[str, int], int],
) -> list[PartitionRange]:
    """The range of each partition to read, end offsets captured now."""
    partitions = list(partitions)
    if not partitions:
        return []
    try:
        # Assigning (paused, so nothing is fetched) makes the client learn every topic's
        # metadata in one request; asked cold, it discovers them one retry at a time.
        consumer.assign(partitions)
        consumer.pause(*partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
    except KafkaError as exc:
        raise BrokerError(f"cannot read offsets: {exc}") from exc
    ranges = []
    for tp in partitions:
        requested = next_offsets.get((tp.topic, tp.partition), 0)
        end = ends[tp]
        if requested > end:
            raise OffsetError(
                f"{tp.topic} partition {tp.partition}: the lake is at offset {requested} but "
                f"the partition ends at {end}; was the topic deleted and recreated?"
            )
        start = max(requested, starts[tp])
        if start > requested:
            logger.error(
                "%s partition %d: offsets %d..%d were deleted by retention before compaction",
                tp.topic, tp.partition, requested, start - 1,
            )
        ranges.append(PartitionRange(tp.topic, tp.partition, start, end, requested))
    return ranges


async def read_range(
    consumer: AIOKafkaConsumer, prange: PartitionRange, limits: ReadLimits
) -> AsyncIterator[MessageBatch]:
    """Batches covering ``[start, end)`` of one partition, each within the batch limits."""
    if prange.pending == 0:
        return
    tp = TopicPartition(prange.topic, prange.partition)
    consumer.assign([tp])
    consumer.seek(tp, prange.start)
    batch = MessageBatch(prange.topic, prange.partition, prange.start, prange.start)
    size = 0
    position = prange.start
    last_progress = time.monotonic()
    try:
        while position < prange.end:
            want = min(limits.max_batch_messages - len(batch), prange.end - position)
            records = (await consumer.getmany(tp, timeout_ms=500, max_records=want)).get(tp, [])
            if not records:
                # Offsets may be missing (transaction markers, compacted topics): trust the
                # consumer's position once it has moved past them.
                position = max(position, await consumer.position(tp))
                if time.monotonic() - last_progress > limits.stall_timeout_s:
                    raise BrokerError(
                        f"{prange.topic} partition {prange.partition}: no progress at offset "
                        f"{position} for {limits.stall_timeout_s:.0f}s (end {prange.end})"
                    )
                continue
            last_progress = time.monotonic()
            if records[-1].offset >= prange.end:  # produced after the run started
                records = [r for r in records if r.offset < prange.end]
                position = prange.end
            if not records:
                continue
            # Whole-list comprehensions: this loop runs for every message of the backlog.
            values = [r.value if r.value is not None else b"" for r in records]
            sizes = list(accumulate(map(len, values), initial=size))
            cut = len(values)
            if sizes[-1] >= limits.max_batch_bytes:
                cut = next(i for i, total in enumerate(sizes[1:], 1)
                           if total >= limits.max_batch_bytes)
            batch.offsets.extend(r.offset for r in records[:cut])
            batch.timestamps.extend(r.timestamp for r in records[:cut])
            batch.values.extend(values[:cut])
            size = sizes[cut]
            position = max(position, records[cut - 1].offset + 1)
            if cut < len(records):
                # The byte limit fell inside this fetch: seek back to the first left-over.
                consumer.seek(tp, records[cut].offset)
                position = records[cut].offset
            if len(batch) >= limits.max_batch_messages or size >= limits.max_batch_bytes:
                batch.last = batch.offsets[-1]
                yield batch
                batch = MessageBatch(prange.topic, prange.partition, position, position)
                size = 0
        if len(batch):
            batch.last = batch.offsets[-1]
            yield batch
    except KafkaError as exc:
        raise BrokerError(
            f"{prange.topic} partition {prange.partition}: read failed near offset {position}: "
            f"{exc}"
        ) from exc
