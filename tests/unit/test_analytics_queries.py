"""The example queries run, and their answers equal what the ground truth says; the data
dictionary names exactly the columns the models build."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pytest

from connectors.simulator.config import SimConfig
from connectors.simulator.engine import Simulation
from connectors.simulator.truth import TruthBuilder
from pipelines.analytics import build_analytics
from pipelines.analytics.dictionary import TABLES, render_markdown
from pipelines.analytics.models import MODELS
from pipelines.analytics.queries import QUERIES
from tests.fixtures.analytics.staging import Feeder, load_events

DICTIONARY = Path(__file__).resolve().parents[2] / "pipelines" / "analytics" / "DICTIONARY.md"


@pytest.fixture(scope="module", params=["current", "v1.0"])
def built(request: pytest.FixtureRequest) -> tuple[duckdb.DuckDBPyConnection, list[dict]]:
    dialect = request.param
    sim = Simulation(SimConfig(dialect=dialect, calls=250, seed=21), duplicates=0.03)
    bodies = [d[0] for d in sim.deliveries()]
    con = duckdb.connect()
    load_events(con, Feeder().convert(bodies))
    build_analytics(con)
    tb = TruthBuilder(dialect, sim.cutoff)
    truth = [*tb.calls(sim.model.legs), *tb.ivr(sim.model.legs), *tb.queue_calls(sim.model.legs)]
    return con, truth


def _run(con: duckdb.DuckDBPyConnection, name: str) -> list[tuple[Any, ...]]:
    (query,) = [q for q in QUERIES if q.name == name]
    return con.execute(query.sql).fetchall()


def _of(truth: list[dict], kind: str) -> list[dict]:
    return [r for r in truth if r["kind"] == kind]


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4)


def test_answer_rate(built) -> None:
    con, truth = built
    per_day: dict[str, Counter[str]] = defaultdict(Counter)
    for c in _of(truth, "call"):
        if c["direction"] == "inbound" and c["complete"]:
            day = per_day[c["created_at"][:10]]
            day["offered"] += 1
            day["answered"] += c["outcome"] == "answered"
    expected = [(d, n["answered"], n["offered"], _ratio(n["answered"], n["offered"]))
                for d, n in sorted(per_day.items())]
    assert [(str(d), a, o, r) for d, a, o, r in _run(con, "answer_rate")] == expected


def test_average_call_duration(built) -> None:
    con, truth = built
    talk: dict[str, list[int]] = defaultdict(list)
    for c in _of(truth, "call"):
        if c["outcome"] == "answered" and c["complete"]:
            talk[c["direction"]].append(c["talk_ms"])
    expected = [(d, len(v), sum(v) / len(v) / 1000) for d, v in sorted(talk.items())]
    got = _run(con, "average_call_duration")
    assert [r[:2] for r in got] == [e[:2] for e in expected]
    for r, e in zip(got, expected, strict=True):  # rounded to 3 decimals
        assert r[2] == pytest.approx(e[2], abs=5.1e-4)


def test_abandon_rate(built) -> None:
    con, truth = built
    inbound = [c for c in _of(truth, "call") if c["direction"] == "inbound" and c["complete"]]
    abandoned = sum(c["outcome"] == "abandoned" for c in inbound)
    assert abandoned > 0
    assert _run(con, "abandon_rate") == [
        (abandoned, len(inbound), _ratio(abandoned, len(inbound)))
    ]


def test_service_level(built) -> None:
    con, truth = built
    stays: dict[str, list[dict]] = defaultdict(list)
    for s in _of(truth, "queue_call"):
        if s["result"] != "waiting":
            stays[s["queue_id"]].append(s)
    expected = []
    for queue, rows in sorted(stays.items()):
        fast = sum(r["result"] == "connected" and r["wait_ms"] <= 20_000 for r in rows)
        waits = [r["wait_ms"] for r in rows if r["result"] == "connected"]
        asa = sum(waits) / len(waits) / 1000 if waits else None
        expected.append((queue, len(rows), fast, _ratio(fast, len(rows)), asa))
    got = _run(con, "service_level")
    assert [r[:4] for r in got] == [e[:4] for e in expected]
    for r, e in zip(got, expected, strict=True):  # averages are rounded to 3 decimals
        assert (r[4] is None and e[4] is None) or r[4] == pytest.approx(e[4], abs=5.1e-4)


def _funnel(truth: list[dict]) -> tuple[Counter, Counter]:
    reached: Counter[tuple[str, str]] = Counter()
    dropped: Counter[tuple[str, str]] = Counter()
    for p in _of(truth, "ivr_path"):
        for node in set(p["path"]):
            reached[p["app_id"], node] += 1
        if p["abandoned"]:
            dropped[p["app_id"], p["exit_node_id"]] += 1
    return reached, dropped


def test_ivr_funnel(built) -> None:
    con, truth = built
    reached, dropped = _funnel(truth)
    expected = sorted(
        ((app, node, n, dropped[app, node], round(1 - dropped[app, node] / n, 4))
         for (app, node), n in reached.items()),
        key=lambda r: (r[0], -r[2], r[1]),
    )
    assert _run(con, "ivr_funnel") == expected


def test_top_drop_off_nodes(built) -> None:
    con, truth = built
    _, dropped = _funnel(truth)
    expected = sorted(((a, n, k) for (a, n), k in dropped.items()),
                      key=lambda r: (-r[2], r[0], r[1]))[:10]
    assert expected and _run(con, "top_drop_off_nodes") == expected


def test_recording_coverage(built) -> None:
    con, truth = built
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for c in _of(truth, "call"):
        if c["outcome"] == "answered":
            per[c["direction"]]["answered"] += 1
            per[c["direction"]]["recorded"] += c["recording_count"] > 0
    expected = [(d, n["answered"], n["recorded"], _ratio(n["recorded"], n["answered"]))
                for d, n in sorted(per.items())]
    assert _run(con, "recording_coverage") == expected


def test_dictionary_names_every_column(built) -> None:
    con, _ = built
    assert set(TABLES) == {m.name for m in MODELS}
    for table, (about, columns) in TABLES.items():
        built_cols = [r[0] for r in con.execute(f"DESCRIBE analytics.{table}").fetchall()]
        assert list(columns) == built_cols, table
        assert about and all(columns.values())


def test_dictionary_markdown_is_current() -> None:
    assert DICTIONARY.read_text(encoding="utf-8") == render_markdown(), (
        "regenerate: python -m pipelines.analytics.dictionary > pipelines/analytics/DICTIONARY.md"
    )
