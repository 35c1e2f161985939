"""Fuzzing both entry points: 100,000 generated and mutated webhook bodies and WebSocket
frames through the converter both channels share, and a sample of them through the real
webhook server (HTTP on loopback). Every input must land as events or as a dead letter with
a reason; nothing may raise, and the server answers only 200 or 400."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.ingest.memory import InMemoryPublisher
from connectors.ingest.metrics import Metrics
from connectors.ingest.service import Channels, IngestService
from connectors.ingest.wsclient import WsConfig, WsListener
from pipelines import avro
from pipelines.catalog import dead_letter_topic
from pipelines.ingest import BodyConverter
from pipelines.settings import load_settings
from tests.chaos.harness import RESULTS, Reconciliation, simulate
from tests.fixtures.ingest.fake_pbx import TOKEN, FakePbx, running_pbx

pytestmark = [pytest.mark.chaos, pytest.mark.slow]
INPUTS = 100_000
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
HOSTILE = ["", "\u0000", "\ud800", "'; DROP TABLE raw.call; --", "%s%n", "\u202e", "𝕏" * 50,
           "A" * 70_000, "../../etc/passwd", "<script>", "NaN", "-0", "1e309"]
VALUES: list[object] = [None, True, 0, -1, 2**63, 2**64 + 1, -(2**70), 1.5, float("inf"), [],
                        {}, [1, [2, [3]]], {"a": {"b": None}}, *HOSTILE]


def _seeds(tmp: Path) -> list[bytes]:
    seeds: list[bytes] = []
    for dialect in ("v1.0", "current"):
        seeds += simulate(tmp, dialect, 60, seed=111).bodies
    for name in ("ws_frames_v1.jsonl", "ws_frames_current.jsonl", "webhook_v1.jsonl",
                 "webhook_current.jsonl"):
        seeds += [line for line in (FIXTURES / name).read_bytes().splitlines() if line.strip()]
    return seeds


def _mutate_json(doc: object, rng: random.Random) -> object:
    """Replace, drop or add one value somewhere in the document."""
    if isinstance(doc, dict) and doc:
        key = rng.choice(list(doc))
        roll = rng.random()
        if roll < 0.3:
            return {k: v for k, v in doc.items() if k != key}
        if roll < 0.6:
            return {**doc, key: rng.choice(VALUES)}
        if roll < 0.7:
            return {**doc, rng.choice(HOSTILE) or "k": rng.choice(VALUES)}
        return {**doc, key: _mutate_json(doc[key], rng)}
    if isinstance(doc, list) and doc:
        i = rng.randrange(len(doc))
        return [*doc[:i], _mutate_json(doc[i], rng), *doc[i + 1:]]
    return rng.choice(VALUES)


def _mutate_bytes(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if not data or roll < 0.25:
            data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif roll < 0.5:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif roll < 0.75:
            del data[rng.randrange(len(data)):]
        else:
            i = rng.randrange(len(data))
            data[i:i] = rng.choice([b"{", b"}", b"[", b'"', b"\\", b"\xff\xfe", b"\x00", b","])
    return bytes(data)


def _inputs(seeds: list[bytes], rng: random.Random) -> Iterator[bytes]:
    for n in range(INPUTS):
        seed = rng.choice(seeds)
        roll = n % 10
        if roll < 5:
            try:
                doc = json.loads(seed)
            except ValueError:
                yield _mutate_bytes(seed, rng)
                continue
            for _ in range(rng.randint(1, 3)):
                doc = _mutate_json(doc, rng)
            yield json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")
        elif roll < 9:
            yield _mutate_bytes(seed, rng)
        else:
            yield bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))


@pytest.mark.timeout(900)
def test_100k_fuzzed_inputs_land_or_are_dead_lettered(tmp_path: Path) -> None:
    rng = random.Random(1234)
    seeds = _seeds(tmp_path)
    converter = BodyConverter("pbx-fuzz", "rwi_fuzz")
    store = converter.encoder.store()
    now = datetime.now(UTC)
    outcome: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for n, raw in enumerate(_inputs(seeds, rng)):
        source = "webhook" if n % 2 else "ws"
        converted = converter.convert(raw, source=source, received_at=now)
        assert converted.messages, f"input {n} produced nothing: {raw[:200]!r}"
        if converted.dead_letters:
            outcome["dead_lettered"] += 1
            for letter in converted.dead_letters:
                assert letter.reason, f"a dead letter without a reason for input {n}"
                reasons[letter.reason] += 1
        else:
            outcome["landed"] += 1
        for message in converted.messages:  # every message decodes with its schema
            avro.decode(message.value, store)
    assert sum(outcome.values()) == INPUTS
    assert outcome["landed"] > 1000 and outcome["dead_lettered"] > 1000
    RESULTS.append(Reconciliation(
        case="fuzz: converter (webhook + ws)", faults=f"{INPUTS:,} mutated inputs", sent=INPUTS,
        events_expected=outcome["landed"], events_stored=outcome["landed"], kafka_messages=0,
        lost=0, doubled=0, truth_rows=0, truth_mismatches=0, dead_letters=outcome["dead_lettered"],
        detail={"reasons": dict(reasons.most_common())}))


@pytest.mark.timeout(600)
async def test_fuzzed_bodies_through_the_webhook_server(tmp_path: Path) -> None:
    """2,000 of the same inputs over HTTP to the real server, with a publisher that
    accepts everything: answers are 200 (landed) or 400 (malformed, dead-lettered)."""
    import aiohttp

    rng = random.Random(99)
    inputs = [raw for raw, _ in zip(_inputs(_seeds(tmp_path), rng), range(2_000), strict=False)]
    service = load_settings(environ={})
    svc = IngestService(service, Channels(("127.0.0.1", 0), None),
                        publisher=InMemoryPublisher(ack_timeout_s=5.0))
    await svc.start()
    statuses: Counter[int] = Counter()
    try:
        address = svc.webhook_address
        assert address is not None
        url = f"http://127.0.0.1:{address[1]}{service.webhook.path}"
        async with aiohttp.ClientSession() as http:
            for raw in inputs:
                async with http.post(url, data=raw) as response:
                    statuses[response.status] += 1
    finally:
        await svc.stop()
    assert set(statuses) <= {200, 400}, statuses
    assert sum(statuses.values()) == len(inputs)


@pytest.mark.timeout(600)
async def test_fuzzed_frames_through_the_websocket_listener(tmp_path: Path) -> None:
    """2,000 of the same inputs as WebSocket frames from a loopback PBX to the real listener:
    each becomes at least one message (events or a dead letter); none is dropped."""
    rng = random.Random(77)
    inputs = [raw for raw, _ in zip(_inputs(_seeds(tmp_path), rng), range(2_000), strict=False)]
    # A text frame must be UTF-8: the PBX's websocket library would refuse anything else.
    texts = [raw for raw in inputs if _utf8(raw)]
    pbx = FakePbx(texts, drop_first_after_frames=False)
    publisher, metrics = InMemoryPublisher(), Metrics()
    async with running_pbx(pbx) as url:
        config = WsConfig(url=url, token=TOKEN, reconnect_initial_s=0.01, reconnect_max_s=0.05)
        listener = WsListener(config, BodyConverter("pbx-fuzz"), publisher, metrics,
                              lambda: datetime.now(UTC))
        task = asyncio.create_task(listener.run())
        try:
            async with asyncio.timeout(120):
                while metrics.total("bodies_received_total") < len(texts) + 2:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)
        finally:
            await listener.stop()
            await asyncio.wait_for(task, 10)
    assert pbx.connections == 1  # no frame broke the connection
    # What each frame must become does not depend on the connection: convert them offline.
    offline = BodyConverter("pbx-fuzz")
    now = datetime.now(UTC)
    expected = [offline.convert(t, source="ws", received_at=now) for t in texts]
    dead = [m for m in publisher.messages if m.topic == dead_letter_topic("rwi")]
    assert len(dead) == sum(len(c.dead_letters) for c in expected) > 100
    replayed = 2  # the events of the PBX double's resume reply
    assert len(publisher.messages) == sum(len(c.messages) for c in expected) + replayed


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
