"""Faults on the webhook path, each reconciled against the simulator's ground truth:
kill -9 of the ingest service (×20), a broker restart mid-ingest, bursts of concurrent
senders, duplicate deliveries, and a PBX restart (the 1.0 ``sequence`` starts again at 1)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest

from pipelines.kafka_local import LocalKafka
from pipelines.settings import load_settings
from tests.chaos.harness import (
    Ingest,
    ReliableSender,
    expected_ids,
    finish,
    free_port,
    kill_at,
    lake_settings,
    land,
    reconcile,
    simulate,
    split_by_call,
)

pytestmark = [pytest.mark.kafka, pytest.mark.chaos, pytest.mark.slow]


async def _land_and_reconcile(case: str, faults: str, bootstrap: str, prefix: str, tmp: Path,
                              bodies: list[bytes], truth: list[dict[str, Any]], started: float,
                              detail: dict[str, Any]) -> None:
    db = await asyncio.to_thread(land, lake_settings(bootstrap, prefix, tmp / "data"))
    result = reconcile(case, faults, db, len(bodies), expected_ids(bodies), truth, started,
                       detail)
    result.check()


@pytest.mark.timeout(600)
async def test_kill_9_of_the_ingest_service_20_times(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    traffic = simulate(tmp_path, "current", 400, seed=101)
    ingest = Ingest(kafka_bootstrap, topic_prefix, tmp_path / "ingest.log")
    rng = random.Random(2026)
    try:
        ingest.start()
        await ingest.healthy()
        sender = ReliableSender(ingest.url)
        marks = rng.sample(range(20, len(traffic.bodies) - 20), 20)
        killer = asyncio.create_task(kill_at(ingest, sender, marks, rng))
        stats = await sender.send([traffic.bodies])
        await killer
        assert ingest.stop() == 0
    finally:
        ingest.cleanup()
    assert ingest.kills == 20
    assert stats.connection_errors > 0  # the kills did cut requests off
    await _land_and_reconcile(
        "ingest kill -9 (current)", "20 x SIGKILL of rwi-etl ingest", kafka_bootstrap,
        topic_prefix, tmp_path, traffic.bodies, traffic.truth, started,
        {"posts": stats.posts, "retries": stats.retries, "cut_off": stats.connection_errors})


@pytest.mark.timeout(600)
async def test_broker_restart_mid_ingest(
    kafka_settings: Any, topic_prefix: str, tmp_path: Path
) -> None:
    # A broker of this test's own, so the suite's shared broker keeps running.
    started = time.monotonic()
    port = free_port()
    broker = LocalKafka(load_settings(environ={
        "RWI_DATA_DIR": str(tmp_path / "broker"), "RWI_KAFKA_PORT": str(port),
        "RWI_KAFKA_CONTROLLER_PORT": str(free_port()),
        "RWI_CACHE_DIR": str(kafka_settings.cache_dir)}))
    bootstrap = f"127.0.0.1:{port}"
    traffic = simulate(tmp_path, "current", 250, seed=102)
    ingest = Ingest(bootstrap, topic_prefix, tmp_path / "ingest.log")
    await asyncio.to_thread(broker.up, 120.0)
    try:
        ingest.start()
        await ingest.healthy()
        sender = ReliableSender(ingest.url)
        sending = asyncio.create_task(sender.send([traffic.bodies]))
        async with asyncio.timeout(120):
            while sender.stats.acked < len(traffic.bodies) // 3:
                await asyncio.sleep(0.02)
        await asyncio.to_thread(broker.down, 30.0)
        await asyncio.sleep(2.0)
        await asyncio.to_thread(broker.up, 120.0)
        stats = await finish(sending, sender, ingest)
        assert ingest.stop() == 0
        assert stats.statuses[503] > 0  # the outage was answered 503, never 2xx
        await _land_and_reconcile(
            "broker restart (current)", "broker stopped 2 s mid-ingest", bootstrap,
            topic_prefix, tmp_path, traffic.bodies, traffic.truth, started,
            {"answered_503": stats.statuses[503], "retries": stats.retries})
    finally:
        ingest.cleanup()
        await asyncio.to_thread(broker.down, 30.0)


@pytest.mark.timeout(600)
async def test_bursts_of_ten_concurrent_senders(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Ten lanes at once (ten times RustPBX's one request in flight), each call's bodies in
    order, in bursts separated by pauses."""
    started = time.monotonic()
    traffic = simulate(tmp_path, "v1.0", 300, seed=103)
    ingest = Ingest(kafka_bootstrap, topic_prefix, tmp_path / "ingest.log")
    lanes = split_by_call(traffic.bodies, 10)
    try:
        ingest.start()
        await ingest.healthy()
        sender = ReliableSender(ingest.url)
        chunk = 200
        for begin in range(0, max(len(lane) for lane in lanes), chunk):
            await sender.send([lane[begin:begin + chunk] for lane in lanes])
            await asyncio.sleep(0.2)
        assert ingest.stop() == 0
    finally:
        ingest.cleanup()
    await _land_and_reconcile(
        "webhook bursts (v1.0)", "10 concurrent lanes, 200-body bursts", kafka_bootstrap,
        topic_prefix, tmp_path, traffic.bodies, traffic.truth, started,
        {"posts": sender.stats.posts, "statuses": dict(sender.stats.statuses)})


@pytest.mark.timeout(600)
async def test_duplicate_deliveries(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """The simulator re-sends 5 % of bodies itself; the sender posts another 20 % a second
    time a little later, and one body of each 50 three times."""
    started = time.monotonic()
    traffic = simulate(tmp_path, "current", 300, seed=104, extra=["--duplicates", "0.05"])
    rng = random.Random(104)
    posted: list[bytes] = []
    later: list[tuple[int, bytes]] = []  # (position after which to post it again, body)
    for i, body in enumerate(traffic.bodies):
        posted.append(body)
        if i % 50 == 0:
            posted += [body, body]
        if rng.random() < 0.2:
            later.append((i + rng.randint(0, 40), body))
        posted += [b for at, b in later if at <= i]
        later = [(at, b) for at, b in later if at > i]
    posted += [b for _, b in later]
    ingest = Ingest(kafka_bootstrap, topic_prefix, tmp_path / "ingest.log")
    try:
        ingest.start()
        await ingest.healthy()
        sender = ReliableSender(ingest.url)
        await sender.send([posted])
        assert ingest.stop() == 0
    finally:
        ingest.cleanup()
    await _land_and_reconcile(
        "duplicate deliveries (current)",
        f"{len(posted) - len(traffic.bodies)} extra copies posted", kafka_bootstrap,
        topic_prefix, tmp_path, traffic.bodies, traffic.truth, started,
        {"posted": len(posted)})


@pytest.mark.timeout(600)
async def test_pbx_restart_resets_the_v1_sequence(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """A 1.0 PBX restarts: its second run numbers events from ``sequence`` 1 again; the
    ingest service keeps running across the restart and is killed once in each run."""
    started = time.monotonic()
    first = simulate(tmp_path, "v1.0", 200, seed=105, start="2026-11-02T08:00:00Z")
    second = simulate(tmp_path, "v1.0", 200, seed=106, start="2026-11-02T14:00:00Z")
    assert first.bodies[0].startswith(b'{"rwi":"1.0","sequence":1,')
    assert second.bodies[0].startswith(b'{"rwi":"1.0","sequence":1,')
    traffic = first.then_restarted(second)
    ingest = Ingest(kafka_bootstrap, topic_prefix, tmp_path / "ingest.log")
    rng = random.Random(105)
    try:
        ingest.start()
        await ingest.healthy()
        for run in (first, second):
            sender = ReliableSender(ingest.url)
            killer = asyncio.create_task(
                kill_at(ingest, sender, [rng.randrange(100, len(run.bodies) - 100)], rng))
            await sender.send([run.bodies])
            await killer
        assert ingest.stop() == 0
    finally:
        ingest.cleanup()
    await _land_and_reconcile(
        "PBX restart (v1.0 sequence reset)", "2 runs from sequence 1 + 2 ingest kills",
        kafka_bootstrap, topic_prefix, tmp_path, traffic.bodies, traffic.truth, started,
        {"first_run": len(first.bodies), "second_run": len(second.bodies)})
