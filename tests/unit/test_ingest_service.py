"""Service wiring: graceful drain, channel selection, settings, logging hygiene."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest

from connectors.cli.cmd_ingest import channels_from
from connectors.ingest.kafka_publisher import resolve_compression
from connectors.ingest.logs import RateLimitFilter, RedactingFormatter
from connectors.ingest.memory import InMemoryPublisher
from connectors.ingest.service import Channels, IngestService, parse_listen
from pipelines.errors import ConfigError
from pipelines.settings import load_settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"


async def test_stop_drains_requests_waiting_for_their_ack() -> None:
    settings = load_settings(environ={"RWI_WEBHOOK_TOKEN": "t"})
    publisher = InMemoryPublisher(ack_timeout_s=5.0)
    publisher.hold = True
    svc = IngestService(settings, Channels(("127.0.0.1", 0), None), publisher=publisher)
    await svc.start()
    address = svc.webhook_address
    assert address is not None
    body = (FIXTURES / "webhook_current.jsonl").read_bytes().splitlines()[0]

    async def post() -> int:
        async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{address[1]}/rwi-events", data=body,
            headers={"Authorization": "Bearer t"},
        ) as response:
            return response.status

    request = asyncio.create_task(post())
    while publisher.in_flight_messages == 0:
        await asyncio.sleep(0.01)
    stopping = asyncio.create_task(svc.stop())
    await asyncio.sleep(0.2)
    assert not request.done() and not stopping.done()  # accepted, so it is waited for
    publisher.release()
    assert await request == 200
    await stopping
    assert publisher.closed and len(publisher.messages) == 1


def test_channels_from_flags_and_config() -> None:
    settings = load_settings(environ={})
    args = argparse.Namespace(webhook=None, ws=None)
    assert channels_from(args, settings) == Channels(("127.0.0.1", 8088), None)
    args = argparse.Namespace(webhook=None, ws="ws://pbx:8080/rwi/v1")
    assert channels_from(args, settings) == Channels(None, "ws://pbx:8080/rwi/v1")
    args = argparse.Namespace(webhook="0.0.0.0:9000", ws="ws://pbx/rwi/v1")
    assert channels_from(args, settings) == Channels(("0.0.0.0", 9000), "ws://pbx/rwi/v1")
    assert parse_listen("[::1]:8088") == ("::1", 8088)
    with pytest.raises(ConfigError):
        parse_listen("8088")
    with pytest.raises(ConfigError):
        IngestService(settings, Channels(None, None), publisher=InMemoryPublisher())


def test_ingest_table_in_toml(tmp_path: Path) -> None:
    config = tmp_path / "rwi.toml"
    config.write_text('[ingest]\nack_timeout_s = 2.5\ncompression = "none"\n'
                      '[webhook]\npath = "/hook"\n', encoding="utf-8")
    settings = load_settings(config, environ={})
    assert settings.ingest.ack_timeout_s == 2.5 and settings.webhook.path == "/hook"
    assert resolve_compression("none") is None
    assert resolve_compression("auto") in {"zstd", "lz4", "gzip"}
    with pytest.raises(ConfigError):
        resolve_compression("brotli")


def test_secrets_are_masked_and_broker_noise_is_rate_limited() -> None:
    formatter = RedactingFormatter(["tok-123"], logging.Formatter("%(message)s"))
    record = logging.LogRecord("x", logging.INFO, "f", 1, "GET /rwi/v1?token=%s", ("tok-123",),
                               None)
    assert formatter.format(record) == "GET /rwi/v1?token=***"
    limiter = RateLimitFilter(interval_s=60)

    def noisy() -> logging.LogRecord:
        return logging.LogRecord("aiokafka.client", logging.ERROR, "f", 1,
                                 "Unable connect to node with id %s", (1,), None)

    assert limiter.filter(noisy())
    assert not any(limiter.filter(noisy()) for _ in range(100))
    other = logging.LogRecord("connectors.ingest", logging.ERROR, "f", 1, "m", (), None)
    assert limiter.filter(other) and limiter.filter(other)
