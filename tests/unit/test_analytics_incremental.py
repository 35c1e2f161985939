"""Incremental runs equal a full rebuild; both dialects mixed in one lake give each one's
tables; a run that touches nothing changes nothing."""

from __future__ import annotations

import itertools
import math
from typing import Any

import duckdb
import pytest

from connectors.simulator.config import SimConfig
from connectors.simulator.engine import Simulation
from connectors.simulator.truth import TruthBuilder
from pipelines.analytics import Touched, build_analytics, touched_since
from pipelines.analytics.models import MODELS
from pipelines.analytics.verify import verify
from tests.fixtures.analytics.staging import Feeder, load_events


def _simulate(
    dialect: str, calls: int, seed: int, pbx_index: int = 0
) -> tuple[Simulation, list[str]]:
    cfg = SimConfig(dialect=dialect, calls=calls, seed=seed).for_pbx(pbx_index)
    sim = Simulation(cfg, duplicates=0.05)
    return sim, [d[0] for d in sim.deliveries()]


def _truth(sim: Simulation, dialect: str) -> list[dict[str, Any]]:
    tb = TruthBuilder(dialect, sim.cutoff)
    legs = sim.model.legs
    return [*tb.calls(legs), *tb.sessions(legs), *tb.ivr(legs), *tb.queue_calls(legs),
            *tb.recordings(legs), *tb.agent_states(sim.model.g.topo.agents)]


def _norm(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else value
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    """Every analytics table, rows sorted (floats rounded: sums may add up in any order)."""
    out = {}
    for model in MODELS:
        rows = con.execute(f"SELECT * FROM analytics.{model.name}").fetchall()
        out[model.name] = sorted((tuple(_norm(v) for v in r) for r in rows), key=repr)
    return out


@pytest.mark.parametrize("dialect", ["current", "v1.0"])
def test_incremental_runs_equal_a_full_rebuild(dialect: str) -> None:
    _, bodies = _simulate(dialect, 120, seed=5)
    feeder = Feeder()
    con = duckdb.connect()
    cuts = [0, len(bodies) * 2 // 5, len(bodies) * 3 // 4, len(bodies)]
    modes = []
    for lo, hi in itertools.pairwise(cuts):
        watermark = feeder.clock
        load_events(con, feeder.convert(bodies[lo:hi]), replace=lo == 0)
        touched = None if lo == 0 else touched_since(con, "staging", received_after=watermark)
        modes.append(build_analytics(con, touched=touched).mode)
    assert modes == ["full", "incremental", "incremental"]
    incremental = snapshot(con)
    build_analytics(con)
    full = snapshot(con)
    for name in full:
        assert incremental[name] == full[name], name
    assert sum(len(rows) for rows in full.values()) > 500


def test_nothing_touched_is_a_noop() -> None:
    _, bodies = _simulate("current", 10, seed=2)
    con = duckdb.connect()
    load_events(con, Feeder().convert(bodies))
    build_analytics(con)
    before = snapshot(con)
    assert build_analytics(con, touched=Touched()).mode == "noop"
    assert snapshot(con) == before


def test_both_dialects_in_one_lake() -> None:
    legacy, legacy_bodies = _simulate("v1.0", 60, seed=9, pbx_index=0)
    today, today_bodies = _simulate("current", 60, seed=9, pbx_index=1)
    con = duckdb.connect()
    events = Feeder("pbx-a").convert(legacy_bodies) + Feeder("pbx-b").convert(today_bodies)
    load_events(con, events)
    build_analytics(con)
    truth = _truth(legacy, "v1.0") + _truth(today, "current")
    assert verify(con, truth) == []
    dialects = con.execute(
        "SELECT dialect, count(*) FROM analytics.calls GROUP BY ALL ORDER BY ALL").fetchall()
    assert [d for d, _ in dialects] == ["current", "v1.0"]
