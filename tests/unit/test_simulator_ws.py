"""The ``/rwi/v1`` WebSocket endpoint: auth, subscribe, resume, list_calls, owner delivery."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from connectors.simulator.config import SimConfig
from connectors.simulator.engine import Simulation
from connectors.simulator.runner import RunOptions, run_async
from connectors.simulator.ws_server import RwiWsServer
from pipelines.parse import parse_body

TOKEN = "your-token"
pytestmark = pytest.mark.timeout(60)


class Feed:
    """A simulation whose events are published to a server on demand."""

    def __init__(self, dialect: str, calls: int = 60, frame: str = "wrapped") -> None:
        self.sim = Simulation(SimConfig(dialect=dialect, seed=4, calls=calls), frame_shape=frame)
        self.server = RwiWsServer(self.sim.wire, TOKEN)
        self._stream = self.sim.deliveries()
        self.published = 0

    async def publish(self, count: int | None = None) -> None:
        sequence = getattr(self.sim.wire, "sequence", None)
        for n, (_body, em, _i, _dup, leg) in enumerate(self._stream, start=1):
            sequence = getattr(self.sim.wire, "sequence", None)
            self.server.publish(em, leg, sequence)
            self.published += 1
            if n % 50 == 0:
                await asyncio.sleep(0)
            if count is not None and n >= count:
                break
        await asyncio.sleep(0.05)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/rwi/v1"


@pytest.fixture
async def v1_feed() -> AsyncIterator[Feed]:
    feed = Feed("v1.0")
    await feed.server.start()
    yield feed
    await feed.server.close()


@pytest.fixture
async def current_feed() -> AsyncIterator[Feed]:
    feed = Feed("current")
    await feed.server.start()
    yield feed
    await feed.server.close()


async def _reply(ws: ClientConnection, action_id: str) -> dict:
    """The reply to a command, skipping event frames that arrive first."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame.get("action_id") == action_id:
            return frame


async def _drain(ws: ClientConnection, idle: float = 0.3) -> list[dict]:
    out = []
    while True:
        try:
            out.append(json.loads(await asyncio.wait_for(ws.recv(), idle)))
        except (TimeoutError, ConnectionClosed):
            return out


async def test_v1_reference_python_example_receives_events(
        v1_feed: Feed, capsys: pytest.CaptureFixture[str]) -> None:
    url = v1_feed.url

    # The 1.0 reference's §8 "Python WebSocket 实时监听" example, verbatim but for the URL.
    async def main():
        async with connect(
            url,
            additional_headers={"Authorization": "Bearer your-token"},
            subprotocols=["rwi-v1"],
        ) as ws:
            await ws.send(json.dumps({
                "rwi": "1.0",
                "action_id": "sub-001",
                "action": "session.subscribe",
                "params": {"contexts": ["*"]}
            }))
            async for msg in ws:
                payload = json.loads(msg)
                for key, data in payload.items():
                    if key == "rwi":
                        continue
                    print(f"[{key}] {json.dumps(data, ensure_ascii=False)}")

    client = asyncio.create_task(main())
    await asyncio.wait_for(v1_feed.server.subscribed.wait(), 5)
    await v1_feed.publish()
    await asyncio.sleep(0.3)
    await v1_feed.server.close()  # the example reads until the server goes away
    await asyncio.wait_for(client, 10)
    lines = capsys.readouterr().out.splitlines()
    seen = {line.split("]")[0][1:] for line in lines}
    assert len(lines) > 200
    assert {"call_incoming", "ivr_node_entered", "queue_joined", "dn_state_changed",
            "agent_state_changed", "type"} <= seen
    assert "call_ringing" not in seen  # owner-dispatched: nobody owns these calls


async def test_v1_resume_replays_after_last_sequence(v1_feed: Feed) -> None:
    await v1_feed.publish(300)
    async with connect(v1_feed.url, additional_headers={"Authorization": f"Bearer {TOKEN}"},
                       subprotocols=["rwi-v1"]) as ws:
        assert ws.subprotocol == "rwi-v1"
        await ws.send(json.dumps({"rwi": "1.0", "action_id": "resume-001",
                                  "action": "session.resume",
                                  "params": {"last_sequence": 250}}))
        frames = await _drain(ws)
    reply, *replayed, last = frames
    assert reply["type"] == "command_completed" and reply["action"] == "session.resume"
    assert reply["data"]["replayed_count"] == len(replayed) == 50
    assert all(len(f) == 1 for f in replayed)  # {"<event_type>": {...}}
    assert last == {"session_resumed": {"session_id": last["session_resumed"]["session_id"],
                                        "last_sequence": 250}}


async def test_current_subscribe_filter_list_calls_and_resume(current_feed: Feed) -> None:
    async with connect(f"{current_feed.url}?token={TOKEN}") as ws:
        assert ws.subprotocol is None
        await ws.send(json.dumps({"action_id": "s1", "action": "session.subscribe",
                                  "params": {"contexts": [],
                                             "events": ["queue_joined", "agent_state_changed"]}}))
        assert json.loads(await ws.recv())["status"] == "success"
        await current_feed.publish(400)
        events = await _drain(ws)
        assert events and {e["event_type"] for e in events} <= {"queue_joined",
                                                               "agent_state_changed"}
        assert all("rwi" not in e and "timestamp" not in e for e in events)
        await ws.send(json.dumps({"action_id": "l1", "action": "session.list_calls"}))
        listed = await _reply(ws, "l1")
        assert listed["type"] == "command_completed" and listed["data"]
        assert {"session_id", "caller", "direction", "status", "started_at"} <= \
            set(listed["data"][0])
        await ws.send(json.dumps({"action_id": "r1", "action": "session.resume", "params": {}}))
        reply = await _reply(ws, "r1")
    text = json.dumps(reply)
    entries = reply["data"]["events"]
    assert reply["action"] == "session.resume" and reply["data"]["replayed_count"] == len(entries)
    assert 0 < len(entries) <= 1000
    for entry in entries:
        assert set(entry) == {"timestamp", "call_id", "event"}
        assert set(entry["event"]) == {"event_type", "call_id", "payload"}
        assert "direction" not in entry["event"]["payload"]  # the cache keeps it un-enriched
    assert not {e["event"]["event_type"] for e in entries} & {"queue_joined",
                                                             "agent_state_changed"}
    replayed = parse_body(text, source="ws", received_at=datetime.now(UTC))
    assert len(replayed) == len(entries)
    assert all(e.source == "ws_resume" and e.event_time is not None for e in replayed)


async def test_attach_call_makes_the_session_its_owner(current_feed: Feed) -> None:
    async with connect(current_feed.url,
                       additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        await current_feed.publish(150)
        await ws.send(json.dumps({"action_id": "l1", "action": "session.list_calls"}))
        calls = (await _reply(ws, "l1"))["data"]
        target = calls[-1]["session_id"]
        await ws.send(json.dumps({"action_id": "a1", "action": "session.attach_call",
                                  "params": {"call_id": target, "mode": "listen"}}))
        assert (await _reply(ws, "a1"))["data"] == {"call_id": target}
        await current_feed.publish()
        frames = await _drain(ws)
    owned = [f for f in frames if f.get("event_type") and f.get("call_id") == target]
    assert any(f["event_type"] == "call_hangup" for f in owned)


async def test_command_errors(current_feed: Feed) -> None:
    async with connect(current_feed.url,
                       additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        await ws.send("{not json")
        assert json.loads(await ws.recv())["error"].startswith("parse_error: ")
        await ws.send(json.dumps({"action": "session.list_calls"}))  # no action_id: dropped
        await ws.send(json.dumps({"action_id": "x1", "action": "session.subscribe"}))
        reply = json.loads(await ws.recv())
        assert reply == {"type": "command_failed", "status": "error", "action_id": "x1",
                         "action": "session.subscribe",
                         "error": "unknown_action: missing field `params`"}
        await ws.send(json.dumps({"action_id": "x2", "action": "no.such"}))
        assert json.loads(await ws.recv())["error"].startswith("unknown_action: ")
        await ws.send(json.dumps({"action_id": "x2", "action": "session.list_calls"}))
        await ws.send(json.dumps({"action_id": "x3", "action": "call.answer",
                                  "params": {"call_id": "c1"}}))
        reply = json.loads(await ws.recv())  # x2 was a duplicate id: dropped silently
        assert reply["action_id"] == "x3" and reply["type"] == "command_failed"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": f"bearer {TOKEN}"}])
async def test_unauthorized_gets_401_with_www_authenticate(current_feed: Feed,
                                                           headers: dict[str, str]) -> None:
    with pytest.raises(InvalidStatus) as exc:
        async with connect(current_feed.url, additional_headers=headers):
            pass
    response = exc.value.response
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="rwi", error="invalid_token"'
    assert response.body == b""


async def test_runner_serves_ws_and_writes_truth(tmp_path: pytest.TempPathFactory) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    truth = tmp_path / "truth.jsonl"  # type: ignore[operator]
    opts = RunOptions(truth=truth, ws=("127.0.0.1", port), ws_token=TOKEN, ws_wait_s=10,
                      ws_linger_s=0.2, progress=False)
    task = asyncio.create_task(run_async(SimConfig(dialect="current", seed=9, calls=30), opts))
    for _ in range(100):
        try:
            ws = await connect(f"ws://127.0.0.1:{port}/rwi/v1?token={TOKEN}")
            break
        except OSError:
            await asyncio.sleep(0.05)
    async with ws:
        await ws.send(json.dumps({"action_id": "s", "action": "session.subscribe",
                                  "params": {"contexts": []}}))
        frames = await _drain(ws, 1.0)
    result = await asyncio.wait_for(task, 20)
    kinds = {f.get("event_type") for f in frames}
    assert "agent_state_changed" in kinds and "test" not in kinds
    assert result.ws_frames >= len(frames) > 10
    assert json.loads(truth.read_text().splitlines()[0])["calls_started"] > 0
