"""Helpers for the Dagster tests: simulated traffic into a real Kafka, per-test settings."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from connectors.cli import cmd_simulate
from dagster_project.resources import RwiResource
from pipelines.catalog import all_topics
from pipelines.encode import OutgoingMessage
from pipelines.events import CanonicalEvent
from pipelines.ingest import BodyConverter
from pipelines.settings import Settings, load_settings
from pipelines.topics import ensure_topics

REPO = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ui: drives the Dagster UI in headless Chromium")


def artifacts_dir() -> Path:
    """Where screenshots are kept after the test (RWI_TEST_ARTIFACTS, else .cache/)."""
    path = Path(os.environ.get("RWI_TEST_ARTIFACTS") or REPO / ".cache" / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def settings_for(bootstrap: str, prefix: str, data_dir: Path) -> Settings:
    return load_settings(environ={"KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                                  "RWI_TOPIC_PREFIX": prefix, "RWI_DATA_DIR": str(data_dir)})


def simulate(out_dir: Path, calls: int, seed: int, *extra: str) -> tuple[Path, Path]:
    """``rwi-etl simulate --out --truth`` (the command's own parser and handler)."""
    bodies, truth = out_dir / f"bodies-{seed}.jsonl", out_dir / f"truth-{seed}.jsonl"
    parser = argparse.ArgumentParser()
    cmd_simulate.register(parser.add_subparsers())
    args = parser.parse_args(["simulate", "--dialect", "current", "--calls", str(calls),
                              "--seed", str(seed), "--out", str(bodies), "--truth", str(truth),
                              "--no-progress", *extra])
    assert args.handler(args, load_settings(environ={})) == 0
    return bodies, truth


def read_bodies(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


class Traffic:
    """Bodies through the ingest path (``BodyConverter``) into the prefix's topics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.converter = BodyConverter(settings.pbx, settings.topic_prefix)
        self.events: list[CanonicalEvent] = []

    def messages(self, bodies: Iterable[bytes]) -> list[OutgoingMessage]:
        out: list[OutgoingMessage] = []
        for body in bodies:
            converted = self.converter.convert(body, source="webhook",
                                               received_at=datetime.now(UTC))
            out.extend(converted.messages)
            self.events.extend(converted.events)
        return out

    def send(self, bodies: Sequence[bytes]) -> int:
        """Convert and produce (acks=all); the number of messages."""
        messages = self.messages(bodies)
        self.produce(messages)
        return len(messages)

    def produce(self, messages: Sequence[OutgoingMessage]) -> None:
        bootstrap, prefix = self.settings.kafka.bootstrap, self.settings.topic_prefix

        async def run() -> None:
            await ensure_topics(bootstrap, all_topics(prefix), 3, 1, 3_600_000)
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                        enable_idempotence=True, linger_ms=5)
            await producer.start()
            try:
                futures = [await producer.send(m.topic, m.value, key=m.key, headers=m.headers)
                           for m in messages]
                await asyncio.gather(*futures)
            finally:
                await producer.stop()

        asyncio.run(run())


@pytest.fixture
def dagster_settings(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Settings:
    """Settings of a fresh deployment: the test broker, a unique prefix, a tmp data dir."""
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    return settings_for(kafka_bootstrap, topic_prefix, tmp_path / "data")


@pytest.fixture
def rwi(dagster_settings: Settings) -> RwiResource:
    return RwiResource.from_settings(dagster_settings)


@pytest.fixture
def traffic(dagster_settings: Settings) -> Traffic:
    return Traffic(dagster_settings)
