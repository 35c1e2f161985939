"""Cluster administration: create topics idempotently, and check that a cluster answers."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)

from pipelines.errors import BrokerError

logger = logging.getLogger(__name__)


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    replication_factor: int,
    retention_ms: int,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the topics in ``names`` that do not exist yet; return the ones created.

    Existing topics are left as they are, so calling this again changes nothing.
    """
    wanted = list(dict.fromkeys(names))
    admin = _admin(bootstrap, timeout_s)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if not missing:
            return []
        configs = {"retention.ms": str(retention_ms)}
        response = await admin.create_topics(
            [NewTopic(name, partitions, replication_factor, topic_configs=configs)
             for name in missing]
        )
        created = _created(response.to_object())
        await _wait_for_leaders(admin, created, timeout_s)
    except KafkaError as exc:
        raise BrokerError(f"could not create topics on {bootstrap}: {exc}") from exc
    finally:
        await admin.close()
    for name in created:
        logger.info("created topic %s (%d partitions, rf %d)", name, partitions,
                    replication_factor)
    return created


def ensure_topics_sync(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    replication_factor: int,
    retention_ms: int,
) -> list[str]:
    """``ensure_topics`` for callers without an event loop (the CLI)."""
    return asyncio.run(
        ensure_topics(bootstrap, names, partitions, replication_factor, retention_ms)
    )


async def list_topics(bootstrap: str, timeout_s: float = 10.0) -> list[str]:
    """Names of all topics at ``bootstrap``."""
    admin = _admin(bootstrap, timeout_s)
    try:
        await admin.start()
        return sorted(await admin.list_topics())
    except KafkaError as exc:
        raise BrokerError(f"could not list topics on {bootstrap}: {exc}") from exc
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: Iterable[str], timeout_s: float = 30.0) -> None:
    """Delete the topics in ``names``; ones already gone are fine."""
    doomed = list(names)
    if not doomed:
        return
    admin = _admin(bootstrap, timeout_s)
    try:
        await admin.start()
        response = (await admin.delete_topics(doomed)).to_object()
    except KafkaError as exc:
        raise BrokerError(f"could not delete topics on {bootstrap}: {exc}") from exc
    finally:
        await admin.close()
    for entry in response.get("topic_error_codes", []):
        error = for_code(entry["error_code"])
        if entry["error_code"] != 0 and error is not UnknownTopicOrPartitionError:
            raise BrokerError(f"deleting topic {entry['topic']} failed: {error.__name__}")
    logger.info("deleted %d topic(s) on %s", len(doomed), bootstrap)


async def describe_cluster(bootstrap: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """Metadata of the cluster at ``bootstrap`` (brokers, controller, cluster id)."""
    admin = _admin(bootstrap, timeout_s)
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            return await admin.describe_cluster()
    except (KafkaError, TimeoutError, OSError) as exc:
        raise BrokerError(f"Kafka at {bootstrap} does not answer: {exc or type(exc).__name__}") \
            from exc
    finally:
        await admin.close()


def probe_cluster(bootstrap: str, timeout_s: float = 5.0) -> tuple[bool, str]:
    """(ready, explanation): ready when the cluster answers metadata with a broker."""
    if not any(_accepts(address, min(timeout_s, 2.0)) for address in bootstrap.split(",")):
        return False, f"nothing accepts connections at {bootstrap}"
    try:
        info = asyncio.run(describe_cluster(bootstrap, timeout_s))
    except BrokerError as exc:
        return False, str(exc)
    brokers = info.get("brokers") or []
    if not brokers:
        return False, f"Kafka at {bootstrap} answers but lists no brokers yet"
    return True, f"{len(brokers)} broker(s), cluster id {info.get('cluster_id')}"


def _accepts(address: str, timeout_s: float) -> bool:
    # A plain TCP connect first: aiokafka logs every refused connection as an ERROR.
    host, sep, port = address.strip().rpartition(":")
    if not sep:
        host, port = port, "9092"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout_s):
            return True
    except (OSError, ValueError):
        return False


def _admin(bootstrap: str, timeout_s: float) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=max(1000, int(timeout_s * 1000))
    )


def _created(response: dict[str, Any]) -> list[str]:
    created: list[str] = []
    for entry in response.get("topic_errors", response.get("topics", [])):
        error = for_code(entry["error_code"])
        if entry["error_code"] == 0:
            created.append(entry["topic"])
        elif error is not TopicAlreadyExistsError:  # lost a race with another creator: fine
            message = entry.get("error_message") or error.description
            raise BrokerError(f"creating topic {entry['topic']} failed: {error.__name__}: "
                              f"{message}")
    return created


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topics: list[str],
                            timeout_s: float) -> None:
    # CreateTopics returns before every partition has a leader; producing right away would
    # hit UNKNOWN_TOPIC_OR_PARTITION, so wait until metadata shows a leader everywhere.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = set(topics)
    while pending and loop.time() < deadline:
        for topic in await admin.describe_topics(sorted(pending)):
            parts = topic.get("partitions") or []
            if topic.get("error_code") == 0 and parts and all(p["leader"] >= 0 for p in parts):
                pending.discard(topic["topic"])
        if pending:
            await asyncio.sleep(0.1)
    if pending:
        raise BrokerError(f"topics {sorted(pending)} have no partition leader after {timeout_s}s")
