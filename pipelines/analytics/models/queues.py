"""``analytics.queue_calls``: one row per stay of a call in a queue.

The n-th ``queue_joined`` of a call to a queue is closed by the n-th ``queue_left`` of the
same pair; the events between them (inclusive) describe the stay. A call that joined a queue
once (nearly all) needs no ordering: every event of the pair belongs to that stay. Today's
queue app reports ``reason = "abandoned"`` for every unconnected exit, so the result is told
apart by what else the stay holds: a ``queue_wait_timeout`` means the system gave up
(``timeout``), a ``queue_fallback_executed`` without one means nobody could take it
(``no_agent``), neither means the caller hung up (``abandoned``). 1.0 names the reason.
"""

ORDER = "event_time, sequence, received_at, event_id"

_STAY_FACTS = """
        min(e.event_time) FILTER (e.event_type = 'queue_agent_connected') AS connected_at,
        arg_min(e.agent_id, e.event_time) FILTER (e.event_type = 'queue_agent_connected')
            AS agent_id,
        count(*) FILTER (e.event_type = 'queue_agent_offered') AS offers,
        count(*) FILTER (e.event_type IN ('queue_agent_no_answer', 'queue_agent_rejected'))
            AS missed_offers,
        bool_or(e.event_type = 'queue_wait_timeout') AS timed_out,
        bool_or(e.event_type = 'queue_fallback_executed') AS fell_back,
        arg_min(e.action, e.event_time) FILTER (e.event_type = 'queue_fallback_executed')
            AS fallback_action,
        arg_min(e.overflow_queue_id, e.event_time) FILTER (e.event_type = 'queue_overflowed')
            AS overflow_queue_id,
        bool_or(e.event_type = 'queue_voicemail_redirected') AS to_voicemail,
        max(e.position) AS max_position"""

QUEUE_CALLS = f"""
WITH ev AS (
    SELECT call_id, coalesce(queue_id, original_queue_id) AS qid, event_id, event_type,
        event_time, sequence, received_at, agent_id, reason, action, overflow_queue_id,
        position, dialect
    FROM {{ev_queue}}
    WHERE call_id IS NOT NULL AND coalesce(queue_id, original_queue_id) IS NOT NULL
),
-- One pass over every (call, queue) pair: a pair joined once (nearly all) is one stay whose
-- facts these aggregates are; pairs joined more often are cut into stays below.
pairs AS (
    SELECT e.call_id, e.qid AS queue_id,
        count(*) FILTER (e.event_type = 'queue_joined') AS joins,
        min(e.event_time) FILTER (e.event_type = 'queue_joined') AS joined_at,
        arg_min(e.sequence, e.event_time) FILTER (e.event_type = 'queue_joined')
            AS joined_sequence,
        arg_min(e.dialect, e.event_time) FILTER (e.event_type = 'queue_joined') AS dialect,
        min(e.event_time) FILTER (e.event_type = 'queue_left') AS left_at,
        arg_min(e.reason, e.event_time) FILTER (e.event_type = 'queue_left') AS leave_reason,
        {_STAY_FACTS}
    FROM ev e
    GROUP BY e.call_id, e.qid
),
single AS (
    SELECT * EXCLUDE (joins) FROM pairs WHERE joins = 1
),
repeated AS (
    SELECT e.* FROM ev e
    JOIN pairs p ON p.call_id = e.call_id AND p.queue_id = e.qid AND p.joins > 1
),
joins AS (
    SELECT call_id, qid AS queue_id, event_time AS joined_at,
        sequence AS joined_sequence, dialect,
        row_number() OVER (PARTITION BY call_id, qid ORDER BY {ORDER}) AS n
    FROM repeated WHERE event_type = 'queue_joined'
),
lefts AS (
    SELECT call_id, qid AS queue_id, event_time AS left_at, reason,
        row_number() OVER (PARTITION BY call_id, qid ORDER BY {ORDER}) AS n
    FROM repeated WHERE event_type = 'queue_left'
),
multi AS (
    SELECT j.call_id, j.queue_id, j.joined_at, j.joined_sequence, j.dialect,
        l.left_at, l.reason AS leave_reason,
        {_STAY_FACTS}
    FROM joins j
    LEFT JOIN lefts l ON l.call_id = j.call_id AND l.queue_id = j.queue_id AND l.n = j.n
    JOIN repeated e ON e.call_id = j.call_id AND e.qid = j.queue_id
        AND e.event_time >= j.joined_at
        AND (l.left_at IS NULL OR e.event_time <= l.left_at)
    GROUP BY ALL
),
stays AS (
    SELECT * FROM single WHERE joined_at IS NOT NULL
    UNION ALL BY NAME
    SELECT * FROM multi
)
SELECT
    s.call_id,
    s.queue_id,
    coalesce(ci.session_id, s.call_id) AS session_id,
    s.joined_at,
    s.joined_sequence,
    s.left_at,
    s.connected_at,
    rwi_ms(s.joined_at, coalesce(s.left_at, s.connected_at)) AS wait_ms,
    CASE
        WHEN s.connected_at IS NOT NULL OR s.leave_reason = 'connected' THEN 'connected'
        WHEN s.left_at IS NULL THEN 'waiting'
        WHEN s.overflow_queue_id IS NOT NULL OR s.leave_reason = 'overflow' THEN 'overflow'
        WHEN s.timed_out OR s.leave_reason = 'timeout' THEN 'timeout'
        WHEN s.leave_reason = 'no_agent' OR (s.fell_back AND s.leave_reason = 'abandoned')
            THEN 'no_agent'
        WHEN s.leave_reason = 'abandoned' THEN 'abandoned'
        WHEN s.leave_reason IS NULL THEN 'dequeued'
        ELSE s.leave_reason
    END AS result,
    s.leave_reason,
    s.agent_id,
    s.offers::INTEGER AS offer_count,
    s.missed_offers::INTEGER AS missed_offers,
    s.fallback_action,
    s.overflow_queue_id,
    coalesce(s.to_voicemail, false) OR coalesce(s.fallback_action = 'voicemail', false)
        AS to_voicemail,
    s.max_position,
    CASE WHEN s.left_at IS NULL AND s.connected_at IS NULL THEN NULL
         ELSE s.connected_at IS NOT NULL
              AND rwi_ms(s.joined_at, s.connected_at) <= (SELECT service_level_ms FROM rwi_params)
    END AS within_service_level,
    s.dialect
FROM stays s
LEFT JOIN rwi_call_info ci ON ci.call_id = s.call_id
"""
