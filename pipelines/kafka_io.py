"""Small Kafka helpers shared by the demo, tests and benchmarks: produce a batch, count."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from pipelines.encode import OutgoingMessage
from pipelines.errors import BrokerError
from pipelines.kafka_read import topic_partitions


async def produce_all(
    bootstrap: str,
    messages: Sequence[OutgoingMessage],
    on_acked: Callable[[int], None] | None = None,
) -> None:
    """Produce with acks=all and idempotence; returns once the broker acknowledged all."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5
    )
    try:
        await producer.start()
        pending = [
            await producer.send(m.topic, m.value, key=m.key, headers=m.headers) for m in messages
        ]
        for future in asyncio.as_completed(pending):
            await future
            if on_acked is not None:
                on_acked(1)
    except KafkaError as exc:
        raise BrokerError(f"producing to {bootstrap} failed: {exc}") from exc
    finally:
        await producer.stop()


async def message_counts(bootstrap: str, topics: Sequence[str]) -> dict[str, int]:
    """Messages currently held per topic (end offset minus beginning offset, all partitions)."""
    partitions = await topic_partitions(bootstrap, topics)
    if not partitions:
        return dict.fromkeys(topics, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        await consumer.start()
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
    except KafkaError as exc:
        raise BrokerError(f"reading offsets from {bootstrap} failed: {exc}") from exc
    finally:
        await consumer.stop()
    counts = dict.fromkeys(topics, 0)
    for tp in partitions:
        counts[tp.topic] += ends[tp] - starts[tp]
    return counts
