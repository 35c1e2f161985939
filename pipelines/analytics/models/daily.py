"""``analytics.daily`` (one row per UTC day) and ``analytics.daily_queues`` (per day and
queue). Everything is attributed to the day the call leg was created, so a late event
re-aggregates exactly the day its call belongs to.

Definitions: *answer rate* = answered legs / ended legs; *abandon rate* = abandoned /
(inbound legs that ended); *service level* = queue stays connected within the threshold /
queue stays that ended; *IVR containment* = calls that used the IVR and ended there without
reaching a queue or an agent and without hanging up inside it / calls that used the IVR.
"""

DAILY = """
WITH calls AS (
    SELECT * FROM {tgt}.calls WHERE {all_days} OR day IN {scope_days}
),
stays AS (
    SELECT c.day, q.* FROM {tgt}.queue_calls q JOIN calls c USING (call_id)
),
ivr AS (
    SELECT c.day, c.call_id,
        bool_or(p.abandoned) AS abandoned_in_ivr,
        c.queue_stays > 0 OR c.agent_id IS NOT NULL OR c.transfer_count > 0 AS left_ivr
    FROM {tgt}.ivr_paths p JOIN calls c USING (call_id)
    GROUP BY c.day, c.call_id, c.queue_stays, c.agent_id, c.transfer_count
),
by_day AS (
    SELECT day,
        count(*) AS calls,
        count(*) FILTER (direction = 'inbound') AS inbound_calls,
        count(*) FILTER (direction = 'outbound') AS outbound_calls,
        count(*) FILTER (direction = 'internal') AS internal_calls,
        count(*) FILTER (complete) AS ended_calls,
        count(*) FILTER (outcome = 'answered') AS answered_calls,
        count(*) FILTER (outcome = 'abandoned') AS abandoned_calls,
        count(*) FILTER (direction = 'inbound' AND complete) AS inbound_ended,
        avg(talk_ms) FILTER (outcome = 'answered' AND talk_ms IS NOT NULL) AS avg_talk_ms,
        sum(talk_ms) AS talk_ms,
        avg(ring_ms) FILTER (outcome = 'answered') AS avg_ring_ms,
        count(DISTINCT session_id) AS sessions,
        sum(recording_count) AS recordings
    FROM calls GROUP BY day
),
q AS (
    SELECT day,
        count(*) AS queue_stays,
        count(*) FILTER (result <> 'waiting') AS queue_stays_ended,
        count(*) FILTER (result = 'connected') AS queue_connected,
        count(*) FILTER (result = 'abandoned') AS queue_abandoned,
        count(*) FILTER (within_service_level) AS within_service_level,
        avg(wait_ms) FILTER (result = 'connected') AS avg_speed_of_answer_ms
    FROM stays GROUP BY day
),
i AS (
    SELECT day, count(*) AS ivr_calls,
        count(*) FILTER (NOT left_ivr AND NOT abandoned_in_ivr) AS ivr_contained,
        count(*) FILTER (abandoned_in_ivr) AS ivr_abandoned
    FROM ivr GROUP BY day
)
SELECT
    d.day,
    d.calls::INTEGER AS calls,
    d.sessions::INTEGER AS sessions,
    d.inbound_calls::INTEGER AS inbound_calls,
    d.outbound_calls::INTEGER AS outbound_calls,
    d.internal_calls::INTEGER AS internal_calls,
    d.answered_calls::INTEGER AS answered_calls,
    d.abandoned_calls::INTEGER AS abandoned_calls,
    d.answered_calls / nullif(d.ended_calls, 0) AS answer_rate,
    d.abandoned_calls / nullif(d.inbound_ended, 0) AS abandon_rate,
    d.avg_talk_ms,
    d.avg_ring_ms,
    d.talk_ms::BIGINT AS talk_ms,
    coalesce(q.queue_stays, 0)::INTEGER AS queue_stays,
    coalesce(q.queue_connected, 0)::INTEGER AS queue_connected,
    coalesce(q.queue_abandoned, 0)::INTEGER AS queue_abandoned,
    q.avg_speed_of_answer_ms,
    q.within_service_level / nullif(q.queue_stays_ended, 0) AS service_level,
    coalesce(i.ivr_calls, 0)::INTEGER AS ivr_calls,
    coalesce(i.ivr_contained, 0)::INTEGER AS ivr_contained,
    coalesce(i.ivr_abandoned, 0)::INTEGER AS ivr_abandoned,
    i.ivr_contained / nullif(i.ivr_calls, 0) AS ivr_containment_rate,
    d.recordings::INTEGER AS recordings
FROM by_day d
LEFT JOIN q USING (day)
LEFT JOIN i USING (day)
WHERE d.day IS NOT NULL
"""

DAILY_QUEUES = """
WITH calls AS (
    SELECT call_id, day FROM {tgt}.calls WHERE {all_days} OR day IN {scope_days}
)
SELECT
    c.day,
    q.queue_id,
    count(*)::INTEGER AS stays,
    count(*) FILTER (q.result = 'connected')::INTEGER AS connected,
    count(*) FILTER (q.result = 'abandoned')::INTEGER AS abandoned,
    count(*) FILTER (q.result = 'timeout')::INTEGER AS timed_out,
    count(*) FILTER (q.result = 'no_agent')::INTEGER AS no_agent,
    count(*) FILTER (q.result = 'overflow')::INTEGER AS overflowed,
    avg(q.wait_ms) FILTER (q.result = 'connected') AS avg_speed_of_answer_ms,
    max(q.wait_ms) AS max_wait_ms,
    avg(q.wait_ms) FILTER (q.result = 'abandoned') AS avg_abandon_wait_ms,
    count(*) FILTER (q.within_service_level) / nullif(count(*) FILTER (q.result <> 'waiting'), 0)
        AS service_level,
    count(*) FILTER (q.result = 'abandoned') / nullif(count(*) FILTER (q.result <> 'waiting'), 0)
        AS abandon_rate
FROM {tgt}.queue_calls q JOIN calls c USING (call_id)
WHERE c.day IS NOT NULL
GROUP BY c.day, q.queue_id
"""
