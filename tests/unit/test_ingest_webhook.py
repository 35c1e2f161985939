"""The webhook endpoint against the in-memory publisher: status codes, safety, metrics."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.ingest.auth import TokenAuth
from connectors.ingest.memory import InMemoryPublisher
from connectors.ingest.metrics import Metrics
from connectors.ingest.webhook import WebhookConfig, WebhookHandler, build_app
from pipelines import avro
from pipelines.catalog import dead_letter_topic
from pipelines.encode import EventEncoder
from pipelines.ingest import BodyConverter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
NOW = datetime(2026, 8, 22, 15, 40, tzinfo=UTC)
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def bodies(name: str) -> list[bytes]:
    return [line for line in (FIXTURES / name).read_bytes().splitlines() if line.strip()]


class Rig:
    def __init__(self, client: TestClient, publisher: InMemoryPublisher,
                 metrics: Metrics) -> None:
        self.client = client
        self.publisher = publisher
        self.metrics = metrics

    async def post(self, body: bytes, headers: dict[str, str] | None = None,
                   path: str = "/rwi-events") -> tuple[int, dict[str, object], dict[str, str]]:
        response = await self.client.post(path, data=body,
                                          headers=AUTH if headers is None else headers)
        text = await response.text()
        return response.status, json.loads(text) if text else {}, dict(response.headers)


@pytest.fixture
async def make_rig() -> AsyncIterator[Callable[..., object]]:
    clients: list[TestClient] = []

    async def make(publisher: InMemoryPublisher | None = None, *, header: str = "Authorization",
                   token: str | None = TOKEN, max_body_bytes: int = 64 * 1024) -> Rig:
        publisher = publisher or InMemoryPublisher()
        metrics = Metrics()
        handler = WebhookHandler(
            BodyConverter("pbx-test"), publisher, metrics, TokenAuth(token, header),
            WebhookConfig("/rwi-events", max_body_bytes, retry_after_s=2), clock=lambda: NOW,
        )
        client = TestClient(TestServer(build_app(handler)))
        await client.start_server()
        clients.append(client)
        return Rig(client, publisher, metrics)

    yield make
    for client in clients:
        await client.close()


async def test_every_dialect_and_the_test_event_are_stored(make_rig) -> None:
    rig = await make_rig()
    store = EventEncoder().store()
    sent = bodies("webhook_current.jsonl") + bodies("webhook_v1.jsonl")
    for body in sent:
        status, answer, _ = await rig.post(body)
        assert (status, answer) == (200, {"status": "ok", "events": 1}), body[:80]
    assert len(rig.publisher.messages) == len(sent)
    for body, message in zip(sent, rig.publisher.messages, strict=True):
        decoded = avro.decode(message.value, store).record
        doc = json.loads(body)
        assert decoded["meta"]["event_type"] == doc["event_type"]
        assert decoded["meta"]["source"] == "webhook"
        assert message.topic == f"rwi.{decoded['meta']['category']}.v1"
        assert dict(message.headers)["rwi.dialect"] == decoded["meta"]["dialect"].encode()
    dialects = {avro.decode(m.value, store).record["meta"]["dialect"]
                for m in rig.publisher.messages}
    assert dialects == {"current", "v1.0"}
    assert rig.metrics.value("events_published_total", channel="webhook") == len(sent)


async def test_redelivered_body_keeps_its_event_id(make_rig) -> None:
    rig = await make_rig()
    store = EventEncoder().store()
    body = bodies("webhook_current.jsonl")[1]
    for _ in range(2):
        assert (await rig.post(body))[0] == 200
    ids = {avro.decode(m.value, store).record["meta"]["event_id"] for m in rig.publisher.messages}
    assert len(rig.publisher.messages) == 2 and len(ids) == 1


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": f"Bearer {TOKEN}x"}])
async def test_bad_or_missing_token_is_401(make_rig, headers: dict[str, str]) -> None:
    rig = await make_rig()
    status, answer, response_headers = await rig.post(bodies("webhook_current.jsonl")[0],
                                                      headers)
    assert status == 401 and answer["reason"] == "unauthorized"
    assert response_headers["WWW-Authenticate"].startswith("Bearer")
    assert rig.publisher.messages == []
    assert rig.metrics.value("rejected_total", channel="webhook", reason="unauthorized") == 1


async def test_custom_header_token(make_rig) -> None:
    rig = await make_rig(header="X-RWI-Token")
    body = bodies("webhook_current.jsonl")[0]
    assert (await rig.post(body, {"X-RWI-Token": TOKEN}))[0] == 200
    assert (await rig.post(body, {"X-RWI-Token": f"Bearer {TOKEN}"}))[0] == 200
    assert (await rig.post(body, {"X-RWI-Token": "nope"}))[0] == 401
    assert (await rig.post(body, AUTH))[0] == 401


def test_tokens_are_compared_in_constant_time() -> None:
    assert TokenAuth(TOKEN).compare is hmac.compare_digest
    calls: list[tuple[bytes, bytes]] = []

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    auth = TokenAuth(TOKEN, compare=recording)
    assert auth.check({"Authorization": f"Bearer {TOKEN}"})
    assert not auth.check({"Authorization": "Bearer x"})
    assert not auth.check({"Authorization": TOKEN})  # no scheme: still compared, then refused
    assert not auth.check({})
    assert len(calls) == 3
    assert TokenAuth(None).check({}) and not TokenAuth(None).enabled


async def test_body_over_the_limit_is_413(make_rig) -> None:
    rig = await make_rig(max_body_bytes=1024)
    status, answer, _ = await rig.post(b"{" + b" " * 2000 + b"}")
    assert status == 413 and answer["reason"] == "too_large"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b" " * 512

    response = await rig.client.post("/rwi-events", data=chunks(), headers=AUTH)
    assert response.status == 413
    assert rig.publisher.messages == []


def big_body(call_id: str, blob: int) -> dict[str, object]:
    template = json.loads(bodies("webhook_current.jsonl")[1])
    return dict(template, call_id=call_id,
                event=dict(template["event"], call_id=call_id, blob="x" * blob))


async def test_an_event_too_large_for_kafka_is_413_and_dead_lettered(make_rig) -> None:
    """Under the body limit but over the publisher's message limit: stored as a dead
    letter (cut to fit), answered 413 ``event_too_large``, never 503 (a retry cannot help)."""
    rig = await make_rig(InMemoryPublisher(max_message_bytes=20_000), max_body_bytes=64 * 1024)
    store = EventEncoder().store()
    raw = json.dumps(big_body("big-1", 40_000)).encode()
    status, answer, _ = await rig.post(raw)
    assert (status, answer["reason"], answer["events"]) == (413, "event_too_large", 0)
    [letter] = rig.publisher.messages
    assert letter.topic == dead_letter_topic("rwi") and letter.size <= 20_000
    record = avro.decode(letter.value, store).record
    assert answer["dead_letter_ids"] == [record["dead_letter_id"]]
    assert raw.startswith(record["raw"]) and f"of {len(raw)} bytes" in record["detail"]
    assert rig.publisher.ready
    assert (await rig.post(bodies("webhook_current.jsonl")[0]))[0] == 200


async def test_a_batch_with_an_oversize_event_stores_the_rest(make_rig) -> None:
    rig = await make_rig(InMemoryPublisher(max_message_bytes=20_000), max_body_bytes=64 * 1024)
    raw = json.dumps([big_body("a-1", 10), big_body("big-2", 40_000),
                      big_body("c-3", 10)]).encode()
    status, answer, _ = await rig.post(raw)
    assert (status, answer["reason"], answer["events"]) == (413, "event_too_large", 2)
    assert len(answer["dead_letter_ids"]) == 1
    keys = sorted(m.key for m in rig.publisher.messages
                  if m.topic != dead_letter_topic("rwi"))
    assert keys == [b"a-1", b"c-3"]
    assert len(rig.publisher.by_topic(dead_letter_topic("rwi"))) == 1
    assert rig.metrics.value("events_published_total", channel="webhook") == 2
    assert rig.metrics.total("dead_letters_total") == 1


async def test_malformed_bodies_are_400_and_dead_lettered(make_rig) -> None:
    rig = await make_rig()
    store = EventEncoder().store()
    garbage = [g.encode() for g in json.loads((FIXTURES / "garbage.json").read_text())]
    for body in garbage:
        status, answer, _ = await rig.post(body)
        assert status == 400 and answer["status"] == "error" and answer["dead_letter_id"]
    letters = rig.publisher.by_topic(dead_letter_topic("rwi"))
    assert len(letters) == len(rig.publisher.messages) == len(garbage)
    raws = [avro.decode(m.value, store).record["raw"] for m in letters]
    assert raws == garbage
    assert rig.metrics.total("dead_letters_total") == len(garbage)


async def test_unknown_event_type_is_kept(make_rig) -> None:
    rig = await make_rig()
    body = json.dumps({"rwi": "1.0", "timestamp": "2026-08-22T15:33:10Z", "call_id": "c9",
                       "event_type": "never_heard_of_it", "event": {"call_id": "c9"}}).encode()
    assert (await rig.post(body))[0] == 200
    assert [m.topic for m in rig.publisher.messages] == ["rwi.unknown.v1"]


async def test_broker_unreachable_is_503_never_2xx(make_rig) -> None:
    publisher = InMemoryPublisher(connected=False)
    rig = await make_rig(publisher)
    status, answer, headers = await rig.post(bodies("webhook_current.jsonl")[0])
    assert (status, answer["reason"], headers["Retry-After"]) == (503, "broker_unavailable", "2")
    # The dead letter of a malformed body must be safe before the 400 as well.
    assert (await rig.post(b"garbage"))[0] == 503


async def test_broker_refusal_is_503(make_rig) -> None:
    publisher = InMemoryPublisher()
    publisher.fail_with = RuntimeError("NOT_ENOUGH_REPLICAS")
    rig = await make_rig(publisher)
    status, answer, _ = await rig.post(bodies("webhook_current.jsonl")[0])
    assert (status, answer["reason"]) == (503, "broker_unavailable")
    assert not publisher.ready
    publisher.fail_with = None
    assert (await rig.post(bodies("webhook_current.jsonl")[0]))[0] == 200
    assert publisher.ready


async def test_no_ack_in_time_is_503(make_rig) -> None:
    publisher = InMemoryPublisher(ack_timeout_s=0.2, degraded_ack_timeout_s=0.05)
    publisher.hold = True
    rig = await make_rig(publisher)
    status, answer, _ = await rig.post(bodies("webhook_current.jsonl")[0])
    assert (status, answer["reason"]) == (503, "broker_unavailable")
    assert publisher.messages == []  # nothing was acknowledged, so nothing was promised


async def test_in_flight_cap_is_503_and_the_held_request_completes(make_rig) -> None:
    body = bodies("webhook_current.jsonl")[0]
    publisher = InMemoryPublisher(max_in_flight_bytes=600, ack_timeout_s=5.0)
    publisher.hold = True
    rig = await make_rig(publisher)
    first = asyncio.create_task(rig.post(body))
    while publisher.in_flight_bytes == 0:
        await asyncio.sleep(0.01)
    status, answer, headers = await rig.post(body)
    assert (status, answer["reason"]) == (503, "overloaded") and "Retry-After" in headers
    assert not first.done()
    publisher.release()
    assert (await first)[0] == 200
    assert publisher.in_flight_bytes == 0 and len(publisher.messages) == 1


async def test_healthz_follows_the_publisher(make_rig) -> None:
    publisher = InMemoryPublisher()
    rig = await make_rig(publisher)
    response = await rig.client.get("/healthz")
    assert response.status == 200 and (await response.json())["broker"] == "ready"
    publisher.set_connected(False)
    assert (await rig.client.get("/healthz")).status == 503


async def test_metrics_text(make_rig) -> None:
    rig = await make_rig()
    await rig.post(bodies("webhook_current.jsonl")[0])
    await rig.post(b"junk")
    await rig.post(b"{}", {})
    response = await rig.client.get("/metrics")
    assert response.status == 200 and response.content_type == "text/plain"
    text = await response.text()
    for line in (
        '# TYPE rwi_ingest_bodies_received_total counter',
        'rwi_ingest_bodies_received_total{channel="webhook"} 2',
        'rwi_ingest_events_published_total{channel="webhook"} 1',
        'rwi_ingest_dead_letters_total{channel="webhook",reason="invalid_json"} 1',
        'rwi_ingest_rejected_total{channel="webhook",reason="unauthorized"} 1',
        '# TYPE rwi_ingest_ack_latency_seconds histogram',
        'rwi_ingest_ack_latency_seconds_bucket{channel="webhook",le="+Inf"} 2',
        'rwi_ingest_ack_latency_seconds_count{channel="webhook"} 2',
    ):
        assert line in text.splitlines(), line


async def test_only_post_on_the_configured_path(make_rig) -> None:
    rig = await make_rig()
    assert (await rig.client.get("/rwi-events", headers=AUTH)).status == 405
    assert (await rig.client.post("/other", data=b"{}", headers=AUTH)).status == 404
