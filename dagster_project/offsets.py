"""Where Kafka is, where the lake and the published database are, and the distance between.

Only observation: nothing here commits a Kafka offset or writes anything. The lake keeps its
own offsets (``lake/_manifest.json``) and the published database its loaded ones
(``meta.offsets``); a run moves them, never a sensor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from pipelines.catalog import all_topics
from pipelines.compact import lake_root
from pipelines.errors import BrokerError
from pipelines.kafka_read import ReadLimits, open_consumer, topic_partitions
from pipelines.lake import Lake
from pipelines.settings import Settings

logger = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]


@dataclass(frozen=True, slots=True)
class Lag:
    """Messages in Kafka beyond some stored offsets, per partition."""

    ends: Offsets
    stored: Offsets

    def of(self, tp: tuple[str, int]) -> int:
        return max(self.ends.get(tp, 0) - self.stored.get(tp, 0), 0)

    @property
    def total(self) -> int:
        return sum(self.of(tp) for tp in self.ends)

    def behind(self) -> Offsets:
        """Partitions with unread messages -> the first of them."""
        return {tp: self.stored.get(tp, 0) for tp in sorted(self.ends) if self.of(tp) > 0}

    def by_topic(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for tp in self.ends:
            out[tp[0]] = out.get(tp[0], 0) + self.of(tp)
        return out


async def _end_offsets(bootstrap: str, topics: list[str]) -> Offsets:
    partitions = await topic_partitions(bootstrap, topics)
    if not partitions:
        return {}
    consumer = await open_consumer(bootstrap, ReadLimits())
    try:
        # Assigned (paused: nothing is fetched), the client learns every topic's metadata in
        # one request instead of one retry per topic.
        consumer.assign(partitions)
        consumer.pause(*partitions)
        ends = await consumer.end_offsets(partitions)
    except KafkaError as exc:
        raise BrokerError(f"cannot read end offsets from {bootstrap}: {exc}") from exc
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): int(end) for tp, end in ends.items()}


def end_offsets(settings: Settings) -> Offsets:
    """Every partition's end offset now, for the topics under the settings' prefix."""
    return asyncio.run(_end_offsets(settings.kafka.bootstrap, all_topics(settings.topic_prefix)))


async def _timestamps_at(bootstrap: str, positions: Mapping[tuple[str, int], int],
                         timeout_s: float) -> dict[tuple[str, int], datetime]:
    consumer = await open_consumer(bootstrap, ReadLimits())
    found: dict[tuple[str, int], datetime] = {}
    try:
        for (topic, partition), offset in positions.items():
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            batch = await consumer.getmany(tp, timeout_ms=int(timeout_s * 1000), max_records=1)
            records = batch.get(tp, [])
            if records:
                found[(topic, partition)] = datetime.fromtimestamp(records[0].timestamp / 1000,
                                                                   UTC)
    except KafkaError as exc:
        raise BrokerError(f"cannot read from {bootstrap}: {exc}") from exc
    finally:
        await consumer.stop()
    return found


def oldest_pending(settings: Settings, lag: Lag, timeout_s: float = 2.0) -> datetime | None:
    """Kafka timestamp of the oldest message beyond the stored offsets (None: none pending)."""
    behind = lag.behind()
    if not behind:
        return None
    stamps = asyncio.run(_timestamps_at(settings.kafka.bootstrap, behind, timeout_s))
    return min(stamps.values()) if stamps else None


def lake_offsets(settings: Settings) -> Offsets:
    """The lake's committed next offset per partition (read without taking its lock: the
    manifest is replaced atomically)."""
    return dict(Lake(lake_root(settings)).read_manifest().offsets)


def database_offsets(db: Path) -> Offsets:
    """``meta.offsets`` of a DuckDB file, opened read-only (empty when it has none yet)."""
    if not db.exists():
        return {}
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute('SELECT topic, "partition", next_offset FROM meta.offsets').fetchall()
    except duckdb.CatalogException:
        return {}
    finally:
        with contextlib.suppress(Exception):
            con.close()
    return {(str(t), int(p)): int(n) for t, p, n in rows}
