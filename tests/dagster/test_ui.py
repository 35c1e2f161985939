"""``dagster dev`` as an operator runs it: the daemon's sensor keeps DuckDB fresh while traffic
flows, and the UI, opened in headless Chromium, shows the assets."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from pipelines.settings import Settings
from pipelines.warehouse import WarehousePaths, quote
from tests.conftest import TEST_TOPIC_PREFIX
from tests.dagster.browser import browser
from tests.dagster.conftest import (
    REPO,
    Traffic,
    artifacts_dir,
    read_bodies,
    settings_for,
    simulate,
)
from tests.dagster.test_definitions import ASSET_KEYS

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]
FRESHNESS_SLO_S = 60.0


@dataclass
class DagsterDev:
    url: str
    settings: Settings
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def published(self) -> Path:
        return WarehousePaths.under(self.settings.data_dir).published

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C as a person would, then make sure nothing of the process group is left."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


@pytest.fixture(scope="module")
def dagster_dev(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[DagsterDev]:
    """``dagster dev`` (webserver and daemon) on loopback, with its own DAGSTER_HOME."""
    root = tmp_path_factory.mktemp("dagster-dev")
    home = root / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster_project" / "dagster.yaml", home / "dagster.yaml")
    settings = settings_for(kafka_bootstrap, f"{TEST_TOPIC_PREFIX}{uuid.uuid4().hex[:12]}",
                            root / "data")
    port = _free_port()
    env = dict(os.environ, DAGSTER_HOME=str(home), RWI_DATA_DIR=str(settings.data_dir),
               RWI_TOPIC_PREFIX=settings.topic_prefix,
               KAFKA_BOOTSTRAP_SERVERS=settings.kafka.bootstrap)
    log = root / "dagster-dev.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster")), "dev",
             "-m", "dagster_project.definitions", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    dev = DagsterDev(f"http://127.0.0.1:{port}", settings, log, proc)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"dagster dev exited:\n{dev.tail()}"
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{dev.url}/server_info", timeout=2)
                break
            assert time.monotonic() < deadline, f"dagster dev did not answer:\n{dev.tail()}"
            time.sleep(1)
        yield dev
    finally:
        _stop(proc)
        shutil.copy(log, artifacts_dir() / "dagster-dev.log")


def _rows(db: Path, sql: str, params: list[object]) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params).fetchall()
    except duckdb.CatalogException:
        return []
    finally:
        con.close()


def _wait_published(dev: DagsterDev, event_id: str, category: str, timeout_s: float) -> float:
    """Seconds until ``event_id`` can be queried in the published database."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if _rows(dev.published, f"SELECT 1 FROM raw.{quote(category)} WHERE event_id = ?",
                 [event_id]):
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{event_id} not published after {timeout_s:.0f}s:\n{dev.tail()}")


@pytest.mark.ui
def test_the_asset_graph_and_catalog_show_the_assets(dagster_dev: DagsterDev,
                                                     tmp_path: Path) -> None:
    traffic = Traffic(dagster_dev.settings)
    bodies, _ = simulate(tmp_path, 20, 71)
    traffic.send(read_bodies(bodies))
    last = traffic.events[-1]
    _wait_published(dagster_dev, last.event_id, last.category, 120)  # nobody clicked

    shots = artifacts_dir()
    names = [k.replace("/", " / ") for k in ASSET_KEYS]
    with browser(tmp_path / "chromium", tmp_path / "chromium.log") as page:
        lineage = page.visit(f"{dagster_dev.url}/asset-groups",
                             ["Global asset lineage", "raw", "analytics", "published"],
                             absent=["fetching statuses", "Loading"],
                             screenshot=shots / "dagster-asset-lineage.png")
        catalog = page.visit(f"{dagster_dev.url}/assets", names, absent=["Loading"],
                             screenshot=shots / "dagster-asset-catalog.png", height=2300)
        calls = page.visit(f"{dagster_dev.url}/assets/analytics/calls?view=events",
                           ["calls_per_hour", "outcomes", "answered"],
                           screenshot=shots / "dagster-analytics-calls.png", height=1600)
    groups = lineage.split("Global asset lineage", 1)[1].split()
    assert {"raw", "analytics", "published"} <= set(groups), lineage
    missing = [n for n in names if n not in catalog]
    assert not missing, f"the catalog does not list {missing}"
    assert "build_mode" in calls and "preview" in calls
    for png in ("dagster-asset-lineage.png", "dagster-asset-catalog.png",
                "dagster-analytics-calls.png"):
        data = (shots / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, png


@dataclass
class _Probe:
    event_id: str
    category: str
    acked_at: float
    seen_after: float | None = None


@dataclass
class _Flow:
    probes: list[_Probe] = field(default_factory=list)
    error: BaseException | None = None


@pytest.mark.slow
def test_duckdb_catches_up_within_a_minute_while_traffic_flows(
        dagster_dev: DagsterDev, tmp_path: Path) -> None:
    traffic = Traffic(dagster_dev.settings)
    start = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    bodies = read_bodies(simulate(tmp_path, 400, 81, "--start", start)[0])
    flow = _Flow()
    batches = [bodies[i:i + 60] for i in range(0, min(len(bodies), 60 * 40), 60)]

    def produce() -> None:
        try:
            for batch in batches[:30]:  # ~90 s of traffic, a batch every 3 s
                traffic.send(batch)
                last = traffic.events[-1]
                flow.probes.append(_Probe(last.event_id, last.category, time.monotonic()))
                time.sleep(3)
        except BaseException as exc:  # reported by the main thread
            flow.error = exc

    producer = threading.Thread(target=produce, name="traffic", daemon=True)
    producer.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        pending = [p for p in list(flow.probes) if p.seen_after is None]
        by_category: dict[str, list[_Probe]] = {}
        for probe in pending:
            by_category.setdefault(probe.category, []).append(probe)
        for category, probes in by_category.items():
            found = {r[0] for r in _rows(
                dagster_dev.published,
                f"SELECT event_id FROM raw.{quote(category)} WHERE event_id IN "
                "(SELECT unnest(?))", [[p.event_id for p in probes]])}
            now = time.monotonic()
            for probe in probes:
                if probe.event_id in found:
                    probe.seen_after = now - probe.acked_at
        if not producer.is_alive() and all(p.seen_after is not None for p in flow.probes):
            break
        time.sleep(0.5)
    producer.join(5)
    assert flow.error is None, flow.error
    latencies = [p.seen_after for p in flow.probes]
    summary = {"probes": len(latencies), "latencies_s": latencies,
               "max_s": max((x for x in latencies if x is not None), default=None),
               "slo_s": FRESHNESS_SLO_S}
    (artifacts_dir() / "dagster-freshness.json").write_text(json.dumps(summary, indent=1))
    print(f"freshness: {len(latencies)} probes, max {summary['max_s']}s")
    assert len(latencies) == 30 and all(x is not None for x in latencies), summary
    assert max(x for x in latencies if x is not None) < FRESHNESS_SLO_S, summary
