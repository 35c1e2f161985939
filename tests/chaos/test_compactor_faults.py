"""kill -9 of the compactor mid-file and mid-commit (×20) while traffic keeps arriving, then
a normal run: reconciled against what the PBX sent and the simulator's ground truth."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines.catalog import all_topics
from pipelines.compact import CompactSettings
from pipelines.ingest import BodyConverter
from pipelines.kafka_io import produce_all
from pipelines.topics import ensure_topics
from tests.chaos.harness import PBX, expected_ids, lake_settings, land, reconcile, simulate
from tests.integration.test_compact_crash import _child

pytestmark = [pytest.mark.kafka, pytest.mark.chaos, pytest.mark.slow]

# Small batches and row groups, so a run passes each point many times.
OPTIONS = {"max_batch_messages": 400, "row_group_rows": 100, "publish": False}
# Mid-file (a row group written, the file not yet synced or renamed) and mid-commit (files
# in place, the manifest being written or not yet loaded into the database).
POINTS = ["row_group_written", "file_synced", "file_written", "manifest_written", "committed",
          "warehouse_synced"]


@pytest.mark.timeout(900)
def test_kill_9_of_the_compactor_20_times(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    traffic = simulate(tmp_path, "v1.0", 300, seed=110)
    data = tmp_path / "data"
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "RWI_TOPIC_PREFIX": topic_prefix,
           "RWI_DATA_DIR": str(data)}
    converter = BodyConverter(PBX, topic_prefix)
    asyncio.run(ensure_topics(kafka_bootstrap, all_topics(topic_prefix), 3, 1, 3_600_000))
    waves = 20
    size = -(-len(traffic.bodies) // waves)
    kills = attempts = 0
    for wave in range(waves):
        # Traffic keeps arriving between the killed runs, as it would under the sensor; each
        # wave's run is killed the first time it reaches the wave's point.
        now = datetime.now(UTC)
        messages = [m for b in traffic.bodies[wave * size:(wave + 1) * size]
                    for m in converter.convert(b, source="webhook", received_at=now).messages]
        asyncio.run(produce_all(kafka_bootstrap, messages))
        point = POINTS[wave % len(POINTS)]
        for _ in range(5):
            attempts += 1
            code = _child(env, point, 1, merge=False, options=OPTIONS)
            if code == -9:
                kills += 1
                break
            assert code == 0, f"a compaction run failed with exit code {code}"
            asyncio.run(produce_all(kafka_bootstrap, messages[:50]))  # redeliveries
    assert kills == 20, f"only {kills} runs were killed in {attempts} attempts"
    db = land(lake_settings(kafka_bootstrap, topic_prefix, data),
              CompactSettings(**OPTIONS))  # type: ignore[arg-type]
    result = reconcile("compactor kill -9 (v1.0)", "20 x SIGKILL mid-file / mid-commit", db,
                       len(traffic.bodies), expected_ids(traffic.bodies), traffic.truth,
                       started, {"attempts": attempts})
    result.check()
