"""Shared fixtures: the real Kafka broker for integration tests, unique topic names per test.

``KAFKA_BOOTSTRAP_SERVERS`` points the suite at an existing cluster; otherwise the project's
own broker runs from ``.cache/test-kafka`` on 127.0.0.1:19192/19193 (override with
``RWI_TEST_KAFKA_PORT`` / ``RWI_TEST_KAFKA_CONTROLLER_PORT``), apart from a user's
``rwi-etl kafka up`` on 19092.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.errors import RwiEtlError
from pipelines.kafka_local import LocalKafka
from pipelines.settings import Settings, load_settings
from pipelines.topics import delete_topics, list_topics, probe_cluster

REPO = Path(__file__).resolve().parent.parent
TEST_TOPIC_PREFIX = "rwi_test_"


@pytest.fixture(scope="session")
def kafka_settings() -> Settings:
    """Settings of the broker the suite uses (an external cluster or the test broker)."""
    env = os.environ
    test_env = {
        "RWI_DATA_DIR": env.get("RWI_TEST_DATA_DIR", str(REPO / ".cache" / "test-kafka")),
        "RWI_KAFKA_PORT": env.get("RWI_TEST_KAFKA_PORT", "19192"),
        "RWI_KAFKA_CONTROLLER_PORT": env.get("RWI_TEST_KAFKA_CONTROLLER_PORT", "19193"),
    }
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "RWI_CACHE_DIR", "RWI_KAFKA_VERSION"):
        if env.get(name):
            test_env[name] = env[name]
    return load_settings(environ=test_env)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_settings: Settings) -> Iterator[str]:
    """Bootstrap address of a ready broker; fails (never skips) when none can be had."""
    kafka = LocalKafka(kafka_settings)
    bootstrap = kafka_settings.kafka.bootstrap
    started = False
    if kafka.external:
        ready, why = probe_cluster(bootstrap, timeout_s=15.0)
        if not ready:
            pytest.fail(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap} does not answer: {why}",
                        pytrace=False)
    else:
        started = not kafka.is_running()
        problem = ""
        try:
            kafka.up(timeout_s=120.0)
        except RwiEtlError as exc:
            problem = str(exc)
        if problem:
            pytest.fail(f"the test Kafka broker could not be started (test ports come from "
                        f"RWI_TEST_KAFKA_PORT / RWI_TEST_KAFKA_CONTROLLER_PORT): {problem}",
                        pytrace=False)
    yield bootstrap
    _delete_test_topics(bootstrap)
    if started:
        kafka.down()


def _delete_test_topics(bootstrap: str) -> None:
    async def run() -> None:
        names = await list_topics(bootstrap)
        await delete_topics(bootstrap, [n for n in names if n.startswith(TEST_TOPIC_PREFIX)])

    asyncio.run(run())


@pytest.fixture
def topic_prefix() -> str:
    """A prefix no other test uses, e.g. ``rwi_test_3f2a…``; topics under it are removed
    when the session ends."""
    return f"{TEST_TOPIC_PREFIX}{uuid.uuid4().hex[:12]}"
