"""Give a starting ingest service the occurrence table its predecessor had.

Event ids number repeated identical facts (pipelines.identity). That numbering lives in
memory; each message also records its decision in an ``rwi.occurrence`` header. Before a
service accepts events, it reads the newest ``max_per_partition`` messages of every
partition of its topics and replays those headers into its tracker, so a restart — graceful
or kill -9 — neither gives a new repetition the id of an old one nor a redelivered body a
new id, and a 1.0 server's first replay after it is aligned with the frames received before
(the paths' histories are restored too). Only headers are looked at; values are not decoded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from pipelines.errors import BrokerError
from pipelines.identity import OCCURRENCE_HEADER, OccurrenceTracker, parse_occurrence_note
from pipelines.kafka_read import ReadLimits, open_consumer, stop_consumer, topic_partitions

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RestoreSummary:
    partitions: int
    messages: int
    restored: int
    malformed: int
    seconds: float
    history: int = 0
    """Deliveries without an instant put back into their paths' histories."""


async def restore_occurrences(
    bootstrap: str,
    topics: Iterable[str],
    tracker: OccurrenceTracker,
    *,
    max_per_partition: int = 100_000,
    stall_timeout_s: float = 60.0,
) -> RestoreSummary:
    """Replay the ``rwi.occurrence`` headers of the tail of each partition into ``tracker``."""
    began = time.monotonic()
    partitions = await topic_partitions(bootstrap, topics)
    if not partitions or max_per_partition <= 0:
        return RestoreSummary(len(partitions), 0, 0, 0, time.monotonic() - began)
    consumer = await open_consumer(bootstrap, ReadLimits())
    messages = restored = malformed = 0
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        pending: dict[TopicPartition, int] = {}
        for tp in partitions:
            first = max(starts[tp], ends[tp] - max_per_partition)
            if first < ends[tp]:
                consumer.seek(tp, first)
                pending[tp] = ends[tp]
        consumer.pause(*[tp for tp in partitions if tp not in pending])
        last_progress = time.monotonic()
        while pending:
            fetched = await consumer.getmany(*pending, timeout_ms=500, max_records=50_000)
            for tp, records in fetched.items():
                end = pending.get(tp)
                if end is None:
                    continue
                for record in records:
                    if record.offset >= end:
                        break
                    messages += 1
                    for name, value in record.headers or ():
                        if name != OCCURRENCE_HEADER:
                            continue
                        parsed = parse_occurrence_note(value)
                        if parsed is None:
                            malformed += 1
                        else:
                            tracker.restore(*parsed)
                            restored += 1
            if fetched:
                last_progress = time.monotonic()
            for tp in list(pending):
                if await consumer.position(tp) >= pending[tp]:
                    del pending[tp]
                    consumer.pause(tp)
            if pending and time.monotonic() - last_progress > stall_timeout_s:
                raise BrokerError(
                    f"restoring event identities: no progress for {stall_timeout_s:.0f}s on "
                    f"{len(pending)} partitions")
    except KafkaError as exc:
        raise BrokerError(f"restoring event identities from {bootstrap}: {exc}") from exc
    finally:
        await stop_consumer(consumer)
    history = tracker.finish_restore()
    summary = RestoreSummary(len(partitions), messages, restored, malformed,
                             time.monotonic() - began, history)
    if malformed:
        log.warning("%d messages had a malformed %s header", malformed, OCCURRENCE_HEADER)
    return summary
