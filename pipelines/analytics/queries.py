"""Example queries over the analytics tables, the ones dashboards start from.

Each is plain SQL an analyst can paste into DuckDB (or a BI tool pointed at the published
database); ``tests/unit/test_analytics_queries.py`` runs every one and checks its answer
against the simulator's ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    question: str
    sql: str


QUERIES: tuple[Query, ...] = (
    Query(
        "answer_rate",
        "Share of inbound calls that a person answered, per day.",
        """
SELECT day,
       count(*) FILTER (outcome = 'answered') AS answered,
       count(*) AS offered,
       round(count(*) FILTER (outcome = 'answered') / count(*), 4) AS answer_rate
FROM analytics.calls
WHERE direction = 'inbound' AND complete
GROUP BY day ORDER BY day""",
    ),
    Query(
        "average_call_duration",
        "ACD: average talk time of answered calls, in seconds, by direction.",
        """
SELECT direction,
       count(*) AS answered_calls,
       round(avg(talk_ms) / 1000.0, 3) AS acd_seconds
FROM analytics.calls
WHERE outcome = 'answered' AND complete
GROUP BY direction ORDER BY direction""",
    ),
    Query(
        "abandon_rate",
        "Share of inbound calls the caller gave up on (in the IVR or the queue).",
        """
SELECT count(*) FILTER (outcome = 'abandoned') AS abandoned,
       count(*) AS offered,
       round(count(*) FILTER (outcome = 'abandoned') / count(*), 4) AS abandon_rate
FROM analytics.calls
WHERE direction = 'inbound' AND complete""",
    ),
    Query(
        "service_level",
        "Service level per queue: stays answered within 20 seconds / stays that ended; "
        "with the average speed of answer.",
        """
SELECT queue_id,
       count(*) AS stays,
       count(*) FILTER (result = 'connected' AND wait_ms <= 20000) AS answered_in_20s,
       round(count(*) FILTER (result = 'connected' AND wait_ms <= 20000) / count(*), 4)
           AS service_level,
       round(avg(wait_ms) FILTER (result = 'connected') / 1000.0, 3) AS asa_seconds
FROM analytics.queue_calls
WHERE result <> 'waiting'
GROUP BY queue_id ORDER BY queue_id""",
    ),
    Query(
        "ivr_funnel",
        "IVR funnel: per menu node, how many traversals reached it, how many callers hung "
        "up there, and the share that went on.",
        """
WITH reached AS (
    SELECT app_id, node_id, count(DISTINCT (call_id, ivr_index)) AS reached
    FROM analytics.ivr_node_visits
    WHERE ivr_kind = 'tree'
    GROUP BY app_id, node_id
),
dropped AS (
    SELECT app_id, exit_node_id AS node_id, count(*) AS dropped
    FROM analytics.ivr_paths
    WHERE abandoned AND ivr_kind = 'tree'
    GROUP BY app_id, exit_node_id
)
SELECT r.app_id, r.node_id, r.reached, coalesce(d.dropped, 0) AS dropped,
       round(1 - coalesce(d.dropped, 0) / r.reached, 4) AS pass_through
FROM reached r LEFT JOIN dropped d USING (app_id, node_id)
ORDER BY r.app_id, r.reached DESC, r.node_id""",
    ),
    Query(
        "top_drop_off_nodes",
        "Where callers hang up inside the IVR: abandoned traversals by the node they left "
        "from.",
        """
SELECT app_id, exit_node_id AS node_id, count(*) AS drop_offs
FROM analytics.ivr_paths
WHERE abandoned AND ivr_kind = 'tree'
GROUP BY app_id, exit_node_id
ORDER BY drop_offs DESC, app_id, node_id
LIMIT 10""",
    ),
    Query(
        "recording_coverage",
        "Recording coverage: answered calls with at least one recording, by direction.",
        """
SELECT direction,
       count(*) AS answered_calls,
       count(*) FILTER (recording_count > 0) AS recorded,
       round(count(*) FILTER (recording_count > 0) / count(*), 4) AS coverage
FROM analytics.calls
WHERE outcome = 'answered'
GROUP BY direction ORDER BY direction""",
    ),
)
