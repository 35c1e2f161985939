"""``analytics.recordings``: one row per recording of a call leg.

A call's lifecycle events (``record_started/paused/resumed`` then ``record_stopped`` or 1.0's
``record_failed``) are cut into recordings at each stop or failure: the k-th recording holds
the events after the (k-1)-th end. Uploads (``recording_metadata_available``, ``record_end``)
arrive later and in order, so the j-th of each kind belongs to the j-th stopped recording.
Today's automatic recordings send no ``record_started``; their start is unknown. A call
with one recording (nearly all) needs no ordering: all of its events are that recording's.
"""

ORDER = "event_time, sequence, received_at, event_id"

RECORDINGS = f"""
WITH ev AS (
    SELECT event_id, event_type, call_id, event_time, sequence, received_at, dialect,
        error, unique_id, filename, file_size, duration_secs, download_url, url, upload_time,
        agent_id, agent_name, call_type, call_start_time, call_end_time, recording_segments
    FROM {{ev_recording}}
    WHERE call_id IS NOT NULL
),
ev_keys AS (
    SELECT event_id, event_type, call_id, event_time, sequence, received_at,
        (event_type IN ('record_stopped', 'record_failed'))::INTEGER AS is_end,
        event_type IN ('recording_metadata_available', 'record_end') AS is_upload
    FROM {{ev_recording}}
    WHERE call_id IS NOT NULL
),
shape AS (
    SELECT call_id,
        count(*) FILTER (is_end = 1) <= 1
        AND count(*) FILTER (event_type = 'recording_metadata_available') <= 1
        AND count(*) FILTER (event_type = 'record_end') <= 1
        -- (a tie in time takes the ordered path below, which breaks it by arrival)
        AND coalesce(max(event_time) FILTER (NOT is_upload AND is_end = 0)
                     < min(event_time) FILTER (is_end = 1), true) AS single
    FROM ev_keys GROUP BY call_id
),
-- Calls with several recordings: the k-th recording holds the events after the k-th end.
several AS (
    SELECT * FROM ev_keys WHERE call_id IN (SELECT call_id FROM shape WHERE NOT single)
),
life_k AS (
    SELECT event_id, call_id, event_type,
        coalesce(sum(is_end) OVER (
            PARTITION BY call_id ORDER BY {ORDER}
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS k
    FROM (SELECT event_id, call_id, event_type, is_end, event_time, sequence, received_at
          FROM several WHERE NOT is_upload)
),
stop_numbers AS (
    SELECT call_id, k, row_number() OVER (PARTITION BY call_id ORDER BY k) AS stop_no
    FROM life_k WHERE event_type = 'record_stopped'
),
life_count AS (
    SELECT call_id, max(k) + 1 AS n FROM life_k GROUP BY call_id
),
upload_k AS (
    SELECT u.event_id, coalesce(s.k, coalesce(c.n, 0) + u.stop_no - 1) AS k
    FROM (
        SELECT event_id, call_id,
            row_number() OVER (PARTITION BY call_id, event_type ORDER BY {ORDER}) AS stop_no
        FROM several WHERE is_upload
    ) u
    LEFT JOIN stop_numbers s ON s.call_id = u.call_id AND s.stop_no = u.stop_no
    LEFT JOIN life_count c ON c.call_id = u.call_id
),
ks AS (
    SELECT event_id, k FROM life_k UNION ALL SELECT event_id, k FROM upload_k
),
placed AS NOT MATERIALIZED (
    SELECT ev.*, coalesce(ks.k, 0)::BIGINT AS k
    FROM ev LEFT JOIN ks USING (event_id)
),
pause_ev AS (
    SELECT call_id, k, event_type, event_time,
        row_number() OVER (PARTITION BY call_id, k, event_type ORDER BY {ORDER}) AS n
    FROM placed WHERE event_type IN ('record_paused', 'record_resumed')
),
pauses AS (
    SELECT p.call_id, p.k,
        count(*) AS pause_count,
        min(p.event_time) AS paused_at,
        min(r.event_time) AS resumed_at,
        rwi_us_to_ms(sum(
            epoch_us(coalesce(r.event_time, st.stopped_at)) - epoch_us(p.event_time)))
            AS paused_ms
    FROM pause_ev p
    LEFT JOIN pause_ev r
        ON r.call_id = p.call_id AND r.k = p.k AND r.n = p.n AND r.event_type = 'record_resumed'
    LEFT JOIN (
        SELECT call_id, k, min(event_time) AS stopped_at FROM placed
        WHERE event_type IN ('record_stopped', 'record_failed') GROUP BY call_id, k
    ) st ON st.call_id = p.call_id AND st.k = p.k
    WHERE p.event_type = 'record_paused'
    GROUP BY p.call_id, p.k
),
-- Each recording has at most one stop, failure, metadata and record_end: k numbers them.
recs AS (
    SELECT call_id, k, min(event_time) AS first_at, arg_min(dialect, event_time) AS dialect
    FROM placed GROUP BY call_id, k
),
starts AS (
    SELECT call_id, k, min(event_time) AS started_at FROM placed
    WHERE event_type = 'record_started' GROUP BY call_id, k
),
stops AS (
    SELECT call_id, k, event_time AS stopped_at, unique_id, filename, file_size,
        duration_secs, download_url, upload_time, agent_id, agent_name, call_type,
        call_start_time, call_end_time
    FROM placed WHERE event_type = 'record_stopped'
),
fails AS (
    SELECT call_id, k, event_time AS failed_at, error FROM placed
    WHERE event_type = 'record_failed'
),
metas AS (
    SELECT call_id, k, event_time AS metadata_at, unique_id, filename, file_size, download_url,
        upload_time, agent_id, agent_name, call_type, call_start_time, call_end_time,
        recording_segments
    FROM placed WHERE event_type = 'recording_metadata_available'
),
ends AS (
    SELECT call_id, k, event_time AS record_end_at, url, file_size, duration_secs, dialect
    FROM placed WHERE event_type = 'record_end'
)
SELECT
    k0.call_id,
    coalesce(so.unique_id, me.unique_id, ci.uuid, k0.call_id) AS recording_id,
    k0.k::INTEGER AS recording_index,
    ci.session_id,
    -- Today's record_stopped names the local path; the upload names the archived file.
    coalesce(me.filename, so.filename) AS filename,
    coalesce(so.file_size, me.file_size, en.file_size) AS file_size,
    coalesce(so.duration_secs, CASE WHEN en.dialect = 'v1.0' THEN en.duration_secs END)
        AS duration_secs,
    coalesce(me.download_url, en.url, so.download_url) AS download_url,
    st.started_at,
    so.stopped_at,
    fa.failed_at,
    p.paused_at,
    p.resumed_at,
    coalesce(p.pause_count, 0)::INTEGER AS pause_count,
    coalesce(p.paused_ms, 0)::BIGINT AS paused_ms,
    try_cast(coalesce(me.upload_time, so.upload_time) AS TIMESTAMPTZ) AS uploaded_at,
    me.metadata_at,
    en.record_end_at,
    CASE
        WHEN fa.failed_at IS NOT NULL THEN 'failed'
        WHEN me.metadata_at IS NOT NULL OR en.record_end_at IS NOT NULL THEN 'available'
        WHEN so.stopped_at IS NOT NULL THEN 'stopped'
        WHEN coalesce(p.pause_count, 0) > 0 AND p.resumed_at IS NULL THEN 'paused'
        ELSE 'recording'
    END AS status,
    fa.error,
    coalesce(me.agent_id, so.agent_id) AS agent_id,
    coalesce(me.agent_name, so.agent_name) AS agent_name,
    coalesce(me.call_type, so.call_type) AS call_type,
    try_cast(coalesce(me.call_start_time, so.call_start_time) AS TIMESTAMPTZ) AS call_started_at,
    try_cast(coalesce(me.call_end_time, so.call_end_time) AS TIMESTAMPTZ) AS call_ended_at,
    me.recording_segments,
    k0.dialect
FROM recs k0
LEFT JOIN starts st ON st.call_id = k0.call_id AND st.k = k0.k
LEFT JOIN stops so ON so.call_id = k0.call_id AND so.k = k0.k
LEFT JOIN fails fa ON fa.call_id = k0.call_id AND fa.k = k0.k
LEFT JOIN metas me ON me.call_id = k0.call_id AND me.k = k0.k
LEFT JOIN ends en ON en.call_id = k0.call_id AND en.k = k0.k
LEFT JOIN pauses p ON p.call_id = k0.call_id AND p.k = k0.k
LEFT JOIN rwi_call_info ci ON ci.call_id = k0.call_id
"""
