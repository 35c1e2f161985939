"""The operations report: a static HTML page with inline SVG charts, readable offline.

It reads the published DuckDB database read-only, so it never blocks a pipeline run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import duckdb

from pipelines.report import svg

OUTCOMES = (
    "answered",
    "no_answer",
    "busy",
    "rejected",
    "canceled",
    "abandoned",
    "failed",
    "in_progress",
)


@dataclass(slots=True)
class ReportData:
    """Everything the report shows, gathered with a handful of queries."""

    generated_at: datetime
    events_per_category: list[tuple[str, int]] = field(default_factory=list)
    calls_by_outcome: list[tuple[str, int]] = field(default_factory=list)
    hours: list[str] = field(default_factory=list)
    per_hour: dict[str, list[float]] = field(default_factory=dict)
    kpis: dict[str, float | int | None] = field(default_factory=dict)
    wait_edges: list[float] = field(default_factory=list)
    wait_counts: list[int] = field(default_factory=list)
    funnel: list[tuple[str, float]] = field(default_factory=list)
    drop_offs: list[tuple[str, float]] = field(default_factory=list)
    recordings: list[tuple[str, int]] = field(default_factory=list)
    quality: list[tuple[str, Any]] = field(default_factory=list)


def _one(con: duckdb.DuckDBPyConnection, query: str) -> Any:
    row = con.execute(query).fetchone()
    return row[0] if row else None


def _has(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        _one(
            con,
            "SELECT count(*) FROM information_schema.tables "
            f"WHERE table_schema = '{schema}' AND table_name = '{table}'",
        )
    )


def gather(con: duckdb.DuckDBPyConnection, *, clock: datetime | None = None) -> ReportData:
    """Query the published database for the report's figures."""
    data = ReportData(generated_at=clock or datetime.now(UTC))
    tables = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'staging' "
        "ORDER BY table_name"
    ).fetchall()
    for (name,) in tables:
        count = _one(con, f'SELECT count(*) FROM staging."{name}"')
        if count:
            data.events_per_category.append((name, int(count)))
    if not _has(con, "analytics", "calls"):
        return data
    data.calls_by_outcome = [
        (str(o), int(n))
        for o, n in con.execute(
            "SELECT outcome, count(*) FROM analytics.calls GROUP BY outcome ORDER BY 2 DESC"
        ).fetchall()
    ]
    rows = con.execute(
        "SELECT strftime(date_trunc('hour', created_at), '%m-%d %H:00') AS h, outcome, count(*) "
        "FROM analytics.calls WHERE created_at IS NOT NULL GROUP BY ALL ORDER BY h"
    ).fetchall()
    data.hours = sorted({r[0] for r in rows})
    index = {h: i for i, h in enumerate(data.hours)}
    present = [o for o in OUTCOMES if any(r[1] == o for r in rows)]
    data.per_hour = {o: [0.0] * len(data.hours) for o in present}
    for hour, outcome, n in rows:
        if outcome in data.per_hour:
            data.per_hour[outcome][index[hour]] = float(n)
    kpi = con.execute(
        """SELECT count(*) AS legs,
                  count(*) FILTER (WHERE outcome = 'answered') AS answered,
                  count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned,
                  count(*) FILTER (WHERE outcome <> 'in_progress') AS ended,
                  count(*) FILTER (WHERE direction = 'inbound' AND outcome <> 'in_progress')
                      AS inbound_ended,
                  avg(talk_ms) FILTER (WHERE outcome = 'answered') AS avg_talk_ms
           FROM analytics.calls"""
    ).fetchone()
    assert kpi is not None
    legs, answered, abandoned, ended, inbound_ended, avg_talk = kpi
    data.kpis = {
        "call legs": legs,
        "answer rate": answered / ended if ended else None,
        "abandon rate (inbound)": abandoned / inbound_ended if inbound_ended else None,
        "average talk time (s)": avg_talk / 1000 if avg_talk is not None else None,
    }
    if _has(con, "analytics", "queue_calls"):
        waits = [
            r[0] / 1000
            for r in con.execute(
                "SELECT wait_ms FROM analytics.queue_calls WHERE wait_ms IS NOT NULL"
            ).fetchall()
        ]
        data.wait_edges, data.wait_counts = _histogram(waits)
        sl = _one(
            con,
            "SELECT avg(within_service_level::INT) FROM analytics.queue_calls "
            "WHERE within_service_level IS NOT NULL",
        )
        data.kpis["service level"] = sl
    if _has(con, "analytics", "ivr_node_visits"):
        data.funnel = [
            (f"reached step {int(step) + 1}", float(n))
            for step, n in con.execute(
                """SELECT visit_index, count(DISTINCT call_id) FROM analytics.ivr_node_visits
                   WHERE visit_index < 8 GROUP BY 1 ORDER BY 1"""
            ).fetchall()
        ]
        data.drop_offs = [
            (str(node), float(n))
            for node, n in con.execute(
                """SELECT exit_node_id, count(*) FROM analytics.ivr_paths
                   WHERE abandoned GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"""
            ).fetchall()
        ]
        contained = _one(
            con,
            "SELECT avg((NOT abandoned AND final_result <> 'transferred')::INT) "
            "FROM analytics.ivr_paths",
        )
        data.kpis["IVR containment"] = contained
    if _has(con, "analytics", "recordings"):
        data.recordings = [
            (str(s), int(n))
            for s, n in con.execute(
                "SELECT status, count(*) FROM analytics.recordings GROUP BY 1 ORDER BY 2 DESC"
            ).fetchall()
        ]
        answered_legs = _one(con, "SELECT count(*) FROM analytics.calls WHERE outcome = 'answered'")
        recorded = _one(
            con,
            "SELECT count(*) FROM analytics.calls WHERE outcome = 'answered' "
            "AND recording_count > 0",
        )
        data.kpis["answered calls recorded"] = recorded / answered_legs if answered_legs else None
    data.quality = _quality(con)
    return data


def _histogram(values: list[float], bins: int = 12) -> tuple[list[float], list[int]]:
    if not values:
        return [], []
    top = max(values)
    width = max(math.ceil(top / bins), 1)
    edges = [float(i * width) for i in range(bins + 1)]
    counts = [0] * bins
    for v in values:
        counts[min(int(v // width), bins - 1)] += 1
    return edges, counts


def _quality(con: duckdb.DuckDBPyConnection) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if _has(con, "raw", "deadletter"):
        out.append(("dead letters", _one(con, "SELECT count(*) FROM raw.deadletter")))
        for reason, n in con.execute(
            "SELECT reason, count(*) FROM raw.deadletter GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall():
            out.append((f"  dead letters: {reason}", n))
    duplicates = 0
    for (name,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'staging'"
    ).fetchall():
        duplicates += _one(con, f'SELECT count(*) FROM raw."{name}"') - _one(
            con, f'SELECT count(*) FROM staging."{name}"'
        )
    out.append(("duplicate deliveries removed", duplicates))
    if _has(con, "staging", "recording") and _has(con, "analytics", "calls"):
        late = _one(
            con,
            """SELECT count(*) FROM staging.recording r JOIN analytics.calls c USING (call_id)
               WHERE c.ended_at IS NOT NULL AND r.event_time > c.ended_at""",
        )
        out.append(("recording events after hangup (late)", late))
    if _has(con, "analytics", "calls"):
        out.append(
            (
                "calls still up",
                _one(con, "SELECT count(*) FROM analytics.calls WHERE outcome = 'in_progress'"),
            )
        )
    if _has(con, "meta", "runs"):
        row = con.execute("SELECT * FROM meta.runs ORDER BY 1 DESC LIMIT 1").fetchone()
        if row is not None:
            out.append(("last pipeline run", str(row[0])))
    return out


_RATIOS = ("rate", "level", "containment", "recorded")


def _fmt(name: str, value: float | int | None) -> str:
    if value is None:
        return "–"
    if any(word in name for word in _RATIOS):
        return f"{value:.1%}"
    return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"


def render(data: ReportData) -> str:
    """The report as one self-contained HTML document."""
    kpis = "".join(
        f'<div class="kpi"><div class="v">{_fmt(k, v)}</div><div class="k">{escape(k)}</div></div>'
        for k, v in data.kpis.items()
    )
    sections = [
        (
            "Calls per hour by outcome",
            svg.stacked_bars(data.hours, data.per_hour, title="Call legs per hour (UTC) by outcome")
            if data.hours
            else "<p>No calls yet.</p>",
        ),
        (
            "Calls by outcome",
            svg.horizontal_bars(
                [(o, float(n)) for o, n in data.calls_by_outcome],
                title="Call legs by outcome",
                by_label=True,
            ),
        ),
        (
            "Queue wait",
            svg.histogram(
                data.wait_edges, data.wait_counts, title="Queue wait distribution", unit="s"
            )
            if data.wait_counts
            else "<p>No queued calls.</p>",
        ),
        (
            "IVR funnel",
            svg.horizontal_bars(
                data.funnel,
                title="Calls reaching each IVR step (distinct calls)",
                bar_color="#5e35b1",
            ),
        ),
        (
            "IVR drop-off",
            svg.horizontal_bars(
                data.drop_offs,
                title="Top nodes where callers hung up in the IVR",
                bar_color="#c62828",
            ),
        ),
        (
            "Recordings",
            svg.horizontal_bars(
                [(s, float(n)) for s, n in data.recordings],
                title="Recordings by status",
                bar_color="#00897b",
            ),
        ),
        (
            "Events",
            svg.horizontal_bars(
                [(c, float(n)) for c, n in data.events_per_category],
                title="Events per category (distinct)",
                bar_color="#3949ab",
            ),
        ),
    ]
    quality = "".join(
        f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>" for k, v in data.quality
    )
    body = "".join(f"<section><h2>{escape(t)}</h2>{chart}</section>" for t, chart in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>rwi-etl report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1100px; }}
.kpis {{ display: flex; flex-wrap: wrap; gap: 12px; }}
.kpi {{ border: 1px solid #ddd; border-radius: 6px; padding: 10px 16px; min-width: 130px; }}
.kpi .v {{ font-size: 22px; font-weight: 600; }} .kpi .k {{ color: #666; font-size: 12px; }}
section {{ margin-top: 24px; }} table {{ border-collapse: collapse; }}
td {{ border-bottom: 1px solid #eee; padding: 4px 12px 4px 0; }}
</style></head><body>
<h1>rwi-etl — contact-centre report</h1>
<p>Generated {escape(data.generated_at.isoformat(timespec="seconds"))}
from the published DuckDB database.</p>
<div class="kpis">{kpis}</div>
{body}
<section><h2>Data quality</h2><table>{quality}</table></section>
</body></html>
"""


def write_report(db_path: Path, out_path: Path, *, clock: datetime | None = None) -> ReportData:
    """Gather from ``db_path`` (opened read-only) and write the HTML to ``out_path`` atomically."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        data = gather(con, clock=clock)
    finally:
        con.close()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(render(data), encoding="utf-8")
    tmp.replace(out_path)
    return data
