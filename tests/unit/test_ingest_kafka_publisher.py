"""The Kafka publisher's bulk path (queue → one record batch per partition) against a fake
producer: order, partition choice, acknowledgement of whole submissions, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.ingest.kafka_publisher import KafkaPublisher, max_request_size, murmur2
from connectors.ingest.publisher import BrokerUnavailable, MessageTooLarge
from pipelines.encode import OutgoingMessage
from pipelines.settings import IngestSettings


@given(st.binary(max_size=200))
@settings(max_examples=2000)
def test_murmur2_matches_aiokafka(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


class FakeBatch:
    def __init__(self, room: int) -> None:
        self.room = room
        self.keys: list[bytes] = []

    def append(self, *, key: bytes, value: bytes, timestamp: None,
               headers: list[tuple[str, bytes]]) -> object | None:
        if self.keys and len(self.keys) >= self.room:
            return None
        self.keys.append(key)
        return object()


class FakeCluster:
    def add_listener(self, listener: Any) -> None:
        self.listener = listener


class FakeClient:
    cluster = FakeCluster()


class FakeProducer:
    """Records what is handed over; acknowledgements are resolved by the test."""

    client = FakeClient()

    def __init__(self, batch_room: int = 1000, partitions: int = 3) -> None:
        self.batch_room = batch_room
        self.partitions = set(range(partitions))
        self.sent: list[tuple[str, int | None, list[bytes], asyncio.Future[object]]] = []

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.batch_room)

    async def send_batch(self, batch: FakeBatch, topic: str, *,
                         partition: int) -> asyncio.Future[object]:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, batch.keys, future))
        return future

    async def send(self, topic: str, value: bytes, key: bytes,
                   headers: list[tuple[str, bytes]]) -> asyncio.Future[object]:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, None, [key], future))
        return future

    async def partitions_for(self, topic: str) -> set[int]:
        return self.partitions

    def ack_all(self) -> None:
        for *_, future in self.sent:
            if not future.done():
                future.set_result(None)


def message(topic: str, key: str, size: int = 10) -> OutgoingMessage:
    return OutgoingMessage(topic, key.encode(), b"v" * size, [("rwi.source", b"ws")])


@pytest.fixture
async def rig() -> AsyncIterator[tuple[KafkaPublisher, FakeProducer]]:
    # Plain batches come from the producer's create_batch (compressed ones would not).
    publisher = KafkaPublisher("127.0.0.1:1", IngestSettings(compression="none"), topics=[])
    producer = FakeProducer()
    publisher._producer = producer
    publisher._connected = True
    publisher._pump_task = asyncio.create_task(publisher._pump())
    yield publisher, producer
    publisher._pump_task.cancel()
    await asyncio.gather(publisher._pump_task, return_exceptions=True)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_burst_becomes_one_batch_per_partition_in_order(rig: Any) -> None:
    publisher, producer = rig
    messages = [message(f"t{i % 2}", f"call-{i % 7}") for i in range(200)]
    ack = await publisher.submit(messages)
    await settle()
    assert all(partition is not None for _, partition, _, _ in producer.sent)
    assert len(producer.sent) <= 2 * 3  # two topics, three partitions each
    partitioner = DefaultPartitioner()
    for topic, partition, keys, _ in producer.sent:
        wanted = [m.key for m in messages if m.topic == topic
                  and partitioner(m.key, [0, 1, 2], [0, 1, 2]) == partition]
        assert keys == wanted  # the default partitioner's choice, in submission order
    assert not ack.done()
    assert publisher.in_flight_messages == 200
    producer.sent[0][3].set_result(None)
    await settle()
    assert not ack.done()
    producer.ack_all()
    await asyncio.wait_for(ack, 1)
    assert publisher.in_flight_messages == 0 and publisher.in_flight_bytes == 0


async def test_full_batches_are_split(rig: Any) -> None:
    publisher, producer = rig
    producer.batch_room = 4
    ack = await publisher.submit([message("t", "same-call") for _ in range(10)])
    await settle()
    assert [len(keys) for _, _, keys, _ in producer.sent] == [4, 4, 2]
    producer.ack_all()
    await asyncio.wait_for(ack, 1)


async def test_one_failed_batch_fails_the_submission(rig: Any) -> None:
    publisher, producer = rig
    ack = await publisher.submit([message("t", f"k{i}") for i in range(30)])
    await settle()
    producer.sent[0][3].set_exception(RuntimeError("NotEnoughReplicas"))
    producer.ack_all()
    with pytest.raises(BrokerUnavailable, match="NotEnoughReplicas"):
        await asyncio.wait_for(ack, 1)
    assert publisher.in_flight_messages == 0
    assert not publisher.ready  # a failed delivery marks the publisher failing


async def test_single_message_goes_direct_only_when_alone(rig: Any) -> None:
    publisher, producer = rig
    first = await publisher.submit([message("t", "a")])
    assert producer.sent[-1][1] is None  # producer.send: nothing else in flight
    second = await publisher.submit([message("t", "b")])
    await settle()
    assert producer.sent[-1][1] is not None  # queued behind the first: batched path
    producer.ack_all()
    await asyncio.wait_for(asyncio.gather(first, second), 1)


async def test_queued_messages_fail_when_the_producer_is_gone(rig: Any) -> None:
    publisher, _ = rig
    publisher._producer = None
    with pytest.raises(BrokerUnavailable):
        await publisher.submit([message("t", "a"), message("t", "b")])
    assert publisher.in_flight_messages == 0


@pytest.mark.parametrize("batch", [1, 3])
async def test_a_message_over_the_limit_is_refused_for_good(rig: Any, batch: int) -> None:
    """Not BrokerUnavailable, which callers retry: no retry could ever deliver it."""
    publisher, producer = rig
    limit = publisher.max_message_bytes
    assert limit < max_request_size(publisher.settings)  # room for framing
    big = message("t", "big", size=limit + 1)
    with pytest.raises(MessageTooLarge) as refused:
        await publisher.submit([message("t", "a")] * (batch - 1) + [big])
    assert not refused.value.retriable
    assert producer.sent == [] and publisher.in_flight_messages == 0
    assert publisher.ready  # a refused message says nothing about the broker
    ack = await publisher.submit([message("t", "fits", size=limit - 100)])
    producer.ack_all()
    await asyncio.wait_for(ack, 1)


def test_the_message_limit_follows_the_request_size() -> None:
    small, large = IngestSettings(), IngestSettings(max_batch_bytes=2 * 1024 * 1024)
    assert max_request_size(small) == 1024 * 1024
    assert (KafkaPublisher("127.0.0.1:1", large).max_message_bytes
            > KafkaPublisher("127.0.0.1:1", small).max_message_bytes)


def test_only_batches_of_several_messages_are_compressed() -> None:
    from aiokafka.record.default_records import DefaultRecordBatch

    publisher = KafkaPublisher("127.0.0.1:1", IngestSettings(compression="zstd"))
    producer = FakeProducer()
    assert isinstance(publisher._new_batch(producer, 1), FakeBatch)  # the producer's, plain
    batch = publisher._new_batch(producer, 2)
    for _ in range(2):
        assert batch.append(key=b"k", value=b"v" * 200, timestamp=None, headers=[])
    built = DefaultRecordBatch(bytes(batch._build()))
    assert built.compression_type == DefaultRecordBatch.CODEC_ZSTD
    assert [record.value for record in built] == [b"v" * 200] * 2
