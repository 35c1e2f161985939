"""``analytics.conferences`` (one row per room) and ``analytics.conference_members``
(one row per stay of a call leg in a room)."""

ORDER = "event_time, sequence, received_at, event_id"

CONFERENCES = """
WITH ev AS (
    SELECT * FROM {ev_conference}
    WHERE conf_id IS NOT NULL AND ({all_confs} OR conf_id IN {scope_confs})
),
rooms AS (
    SELECT
        conf_id,
        coalesce(min(event_time) FILTER (event_type = 'conference_created'), min(event_time))
            AS created_at,
        min(event_time) FILTER (event_type IN ('conference_destroyed',
            'conference_ended_by_host', 'conference_auto_ended')) AS ended_at,
        arg_min(host_call_id, event_time) FILTER (event_type = 'conference_ended_by_host')
            AS host_call_id,
        count(DISTINCT call_id) FILTER (event_type IN ('conference_member_joined',
            'conference_joined'))::INTEGER AS member_count,
        count(DISTINCT event_id) FILTER (event_type = 'conference_member_muted')::INTEGER
            AS mute_count,
        count(DISTINCT event_id) FILTER (event_type = 'conference_merged')::INTEGER AS merges,
        count(DISTINCT event_id)
            FILTER (event_type = 'conference_seat_replace_succeeded')::INTEGER
            AS seat_replacements,
        count(DISTINCT event_id) FILTER (event_type IN ('conference_error',
            'conference_merge_failed', 'conference_seat_replace_failed',
            'conference_seat_replace_rollback_failed'))::INTEGER AS errors,
        bool_or(event_type = 'conference_joined') AS dial_in,
        CASE
            WHEN bool_or(event_type = 'conference_ended_by_host') THEN 'ended_by_host'
            WHEN bool_or(event_type = 'conference_auto_ended') THEN 'auto_ended'
            WHEN bool_or(event_type = 'conference_destroyed') THEN 'destroyed'
            ELSE 'active'
        END AS status,
        arg_min(dialect, event_time) AS dialect
    FROM ev GROUP BY conf_id
)
SELECT conf_id, created_at, ended_at, rwi_ms(created_at, ended_at) AS duration_ms,
    host_call_id, member_count, mute_count, merges, seat_replacements, errors, dial_in, status,
    dialect
FROM rooms
"""

MEMBERS = f"""
WITH ev AS (
    SELECT * FROM {{ev_conference}}
    WHERE conf_id IS NOT NULL AND ({{all_confs}} OR conf_id IN {{scope_confs}})
),
joins AS (
    SELECT conf_id, call_id, event_time AS joined_at, event_type = 'conference_joined' AS dial_in,
        leg_id, row_number() OVER (PARTITION BY conf_id, call_id ORDER BY {ORDER}) AS n
    FROM ev WHERE event_type IN ('conference_member_joined', 'conference_joined')
        AND call_id IS NOT NULL
),
lefts AS (
    SELECT conf_id, call_id, event_time AS left_at,
        row_number() OVER (PARTITION BY conf_id, call_id ORDER BY {ORDER}) AS n
    FROM (
        SELECT conf_id, call_id, event_time, sequence, received_at, event_id FROM ev
        WHERE event_type IN ('conference_member_left', 'conference_left')
        UNION ALL
        SELECT conf_id, unnest(removed_call_ids), event_time, sequence, received_at, event_id
        FROM ev WHERE event_type = 'conference_ended_by_host'
    ) x
    WHERE call_id IS NOT NULL
),
ends AS (
    SELECT conf_id, min(event_time) AS ended_at FROM ev
    WHERE event_type IN ('conference_destroyed', 'conference_ended_by_host',
                         'conference_auto_ended')
    GROUP BY conf_id
),
mutes AS (
    SELECT conf_id, call_id, count(DISTINCT event_id) AS mute_count FROM ev
    WHERE event_type = 'conference_member_muted' GROUP BY conf_id, call_id
)
SELECT
    j.conf_id, j.call_id, (j.n - 1)::INTEGER AS stay_index, j.joined_at,
    coalesce(l.left_at, e.ended_at) AS left_at,
    (rwi_ms(j.joined_at, coalesce(l.left_at, e.ended_at)))::BIGINT
        AS duration_ms,
    j.dial_in, j.leg_id, coalesce(m.mute_count, 0)::INTEGER AS mute_count
FROM joins j
LEFT JOIN lefts l ON l.conf_id = j.conf_id AND l.call_id = j.call_id AND l.n = j.n
LEFT JOIN ends e ON e.conf_id = j.conf_id
LEFT JOIN mutes m ON m.conf_id = j.conf_id AND m.call_id = j.call_id
"""
