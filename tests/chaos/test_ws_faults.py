"""Faults on the WebSocket path: connections dropped mid-stream (the ingest service resumes
from the PBX's cache), a 1.0 PBX that restarts and numbers its events from 1 again, and the
listening ingest service killed (-9) and started again (its first resume must line up with
what it stored before).

The PBX also posts every event to the webhook, as RustPBX does, so the analytics tables can
be held against the ground truth; the WebSocket side is checked on its own against a
reference listener that stays connected straight to the PBX: every event it saw must be
stored from the ingest service's WebSocket too, under the same id.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from pipelines.analytics.verify import read_truth
from tests.chaos.harness import (
    TOKEN,
    WS_TOKEN,
    DroppingProxy,
    Ingest,
    Traffic,
    expected_ids,
    free_port,
    lake_settings,
    land,
    listen_all,
    reconcile,
    simulator_process,
    stored_ids,
)

pytestmark = [pytest.mark.kafka, pytest.mark.chaos, pytest.mark.slow]
CONTROL = (b'"session_resumed"',)  # each session's own resume marker, not a PBX event


def _config(tmp: Path) -> Path:
    path = tmp / "ingest.toml"
    path.write_text(f'[websocket]\ntoken = "{WS_TOKEN}"\ncontexts = ["*"]\n\n'
                    "[ingest]\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0\n")
    return path


async def _run_pbx(tmp: Path, ingest: Ingest, proxy: DroppingProxy, port: int, seed: int,
                   calls: int, start: str, rng: random.Random,
                   victim: Ingest | None = None, rate: int = 100,
                   ) -> tuple[Traffic, list[bytes]]:
    """One run of a 1.0 PBX serving its WebSocket on ``port`` and posting to the ingest
    webhook, with the proxy's connections cut every 1-2.5 s — or, given a ``victim`` (the
    service listening on the WebSocket), every other time that service killed and started
    again instead; its traffic and the frames the reference listener received."""
    out, truth = tmp / f"pbx-{seed}.jsonl", tmp / f"pbx-{seed}.truth.jsonl"
    sim = simulator_process([
        "--dialect", "v1.0", "--calls", str(calls), "--seed", str(seed), "--start", start,
        "--ws", f"127.0.0.1:{port}", "--ws-token", WS_TOKEN, "--ws-wait", "60",
        "--ws-linger", "6", "--rate", str(rate), "--webhook", ingest.url,
        "--header", f"Authorization:Bearer {TOKEN}", "--out", str(out), "--truth", str(truth),
    ], tmp / f"pbx-{seed}.log")
    frames: list[bytes] = []
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        reference = asyncio.create_task(listen_all(port, ["*"], frames))
        # Cuts while the PBX is sending; after its last event it lingers, and the service
        # gets the time to reconnect and resume once more.
        seen, faults = -1, 0
        while sim.poll() is None:
            await asyncio.sleep(rng.uniform(1.0, 2.5))
            if len(frames) > seen:
                seen = len(frames)
                faults += 1
                if victim is not None and faults % 2 == 0:
                    # Back before the next fault: a listener kept down for longer than the
                    # PBX's resume cache covers (1,000 events, 60 s) cannot get it all back.
                    victim.kill9()
                    victim.start()
                    await victim.healthy()
                else:
                    proxy.cut()
        assert sim.returncode == 0, f"the simulated PBX failed; see {tmp}/pbx-{seed}.log"
        await asyncio.wait_for(reference, 30)
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait(10)
    bodies = [line for line in out.read_bytes().splitlines() if line.strip()]
    return Traffic(bodies, list(read_truth(truth))), frames


def _events(frames: list[bytes]) -> list[bytes]:
    return [f for f in frames if not any(marker in f[:40] for marker in CONTROL)]


async def _case(case: str, tmp: Path, bootstrap: str, prefix: str,
                runs: list[tuple[int, int, str]], *, kill: bool = False) -> None:
    started = time.monotonic()
    port = free_port()
    rng = random.Random(runs[0][0])
    traffic: Traffic | None = None
    frames: list[bytes] = []
    async with DroppingProxy(port) as proxy:
        ingest = Ingest(bootstrap, prefix, tmp / "ingest.log",
                        ws_url=f"ws://127.0.0.1:{proxy.port}/rwi/v1", config=_config(tmp))
        # When the WebSocket listener is killed, the PBX posts to a second service that is
        # not (RustPBX never retries a post, so a killed receiver would lose webhook events).
        hook = Ingest(bootstrap, prefix, tmp / "webhook.log") if kill else ingest
        try:
            ingest.start()
            await ingest.healthy()
            if hook is not ingest:
                hook.start()
                await hook.healthy()
            for seed, calls, start in runs:
                # A restart is down for seconds (start-up, restoring identities): at a
                # slower pace the PBX's cache of 1,000 events still spans it.
                run, seen = await _run_pbx(tmp, hook, proxy, port, seed, calls, start, rng,
                                           ingest if kill else None, 40 if kill else 100)
                traffic = run if traffic is None else traffic.then_restarted(run)
                frames += _events(seen)
            await ingest.healthy()  # started again after the last kill, and resumed
            await asyncio.sleep(3.0)  # the last frames reach Kafka
            assert ingest.stop() == 0 and hook.stop() == 0
        finally:
            ingest.cleanup()
            hook.cleanup()
        cuts = proxy.cuts
    assert traffic is not None and cuts + ingest.kills >= 3 * len(runs)
    assert not kill or ingest.kills >= 3
    db = await asyncio.to_thread(land, lake_settings(bootstrap, prefix, tmp / "data"))
    from_ws = expected_ids(frames, source="ws")
    stored_ws = stored_ids(db, "source <> 'webhook' AND event_type <> 'session_resumed'")
    expected = expected_ids(traffic.bodies, skip_types=("session_resumed",)) | from_ws
    # A resume also replays events a passive listener never gets live (owner delivery):
    # those must carry the id of their webhook copy; any other id is a double.
    extra_ws = stored_ws - expected
    faults = f"{cuts} connection cuts" + (", PBX restart" if len(runs) > 1 else "")
    if kill:
        faults = f"{ingest.kills} x SIGKILL of the listener, {cuts} cuts"
    result = reconcile(case, faults,
                       db, len(traffic.bodies) + len(frames), expected, traffic.truth, started,
                       {"ws_frames": len(frames), "ws_events_lost": len(from_ws - stored_ws),
                        "ws_events_doubled": len(extra_ws), "cuts": cuts,
                        "listener_kills": ingest.kills},
                       session_events=("session_resumed",))
    (tmp / "reference-frames.jsonl").write_bytes(b"\n".join(frames))
    result.lost += len(from_ws - stored_ws)
    result.doubled += len(extra_ws)
    result.check()


@pytest.mark.timeout(600)
async def test_websocket_drops_resume_from_the_cache(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    await _case("WebSocket drops + resume (v1.0)", tmp_path, kafka_bootstrap, topic_prefix,
                [(107, 150, "2026-11-02T08:00:00Z")])


@pytest.mark.timeout(600)
async def test_websocket_pbx_restart_resets_the_sequence(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    await _case("WebSocket PBX restart (v1.0)", tmp_path, kafka_bootstrap, topic_prefix,
                [(108, 80, "2026-11-02T08:00:00Z"), (109, 80, "2026-11-02T14:00:00Z")])


@pytest.mark.timeout(600)
async def test_websocket_listener_killed_resumes_without_doubles(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    await _case("WebSocket listener kill -9 (v1.0)", tmp_path, kafka_bootstrap, topic_prefix,
                [(110, 80, "2026-11-02T08:00:00Z")], kill=True)
