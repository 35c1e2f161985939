"""``analytics.calls`` (one row per call leg) and ``analytics.sessions`` (one per logical call).

Answer time is when a person or the far end answered: the agent connect of a queued call
(today's server sends no ``call_answered`` while an app such as the IVR or the queue runs on
the call, and an app picking up is not an answer), else ``call_answered`` (direct calls,
originates), else joining a dial-in conference room, else the first bridge of the leg.
Every instant is the first event of its kind and the source holds one row per event id,
so a fact delivered twice cannot move or double anything.
"""

ORDER = "event_time, sequence, received_at, event_id"

CALLS = f"""
WITH c AS (
    SELECT call_id, event_type, event_time, sequence, reason, hangup_by, sip_status,
        root_call_id, direction, caller, callee, caller_name, callee_name, called_phone,
        trunk, pbx, dialect
    FROM {{ev_call}} WHERE call_id IS NOT NULL AND event_type <> 'call_bridged'
),
facts AS (
    SELECT call_id,
        min(event_time) FILTER (event_type IN ('call_created', 'call_incoming')) AS created_ev_at,
        min(event_time) AS first_event_at,
        min(event_time) FILTER (event_type = 'call_ringing') AS ringing_at,
        min(event_time) FILTER (event_type = 'call_answered') AS call_answered_at,
        min(event_time) FILTER (event_type = 'call_hangup') AS hangup_at,
        min(event_time) FILTER (event_type = 'call_busy') AS busy_at,
        min(event_time) FILTER (event_type = 'call_no_answer') AS no_answer_at,
        count(*) FILTER (event_type = 'call_ringing') AS ringing_count,
        arg_min(struct_pack(reason, hangup_by, sip_status), event_time)
            FILTER (event_type = 'call_hangup') AS hup,
        arg_min(sequence, event_time) FILTER (event_type IN ('call_created', 'call_incoming'))
            AS created_sequence,
        arg_min(direction, event_time) FILTER (event_type IN ('call_created', 'call_incoming'))
            AS created_direction,
        arg_min(caller, event_time) FILTER (event_type IN ('call_created', 'call_incoming'))
            AS created_caller,
        arg_min(callee, event_time) FILTER (event_type IN ('call_created', 'call_incoming'))
            AS created_callee,
        arg_min(pbx, event_time) AS pbx,
        arg_min(dialect, event_time) AS dialect,
        -- Fields the PBX may fill only on later events (enrichment): the first one sent.
        arg_min(caller_name, event_time) AS caller_name,
        arg_min(callee_name, event_time) AS callee_name,
        arg_min(called_phone, event_time) AS called_phone,
        arg_min(trunk, event_time) AS trunk,
        arg_min(root_call_id, event_time) AS root_call_id
    FROM c GROUP BY call_id
),
uncreated AS (
    -- Legs whose creation event is missing: their first event says who and how.
    SELECT call_id,
        arg_min(struct_pack(direction, caller, callee), event_time) AS info
    FROM {{ev_call}}
    WHERE event_type <> 'call_bridged'
        AND call_id IN (SELECT call_id FROM facts WHERE created_ev_at IS NULL)
    GROUP BY call_id
),
bridges AS (
    SELECT leg AS call_id, min(event_time) AS bridged_at, arg_min(other, event_time) AS bridged_with
    FROM (
        SELECT unnest([leg_a, leg_b]) AS leg, unnest([leg_b, leg_a]) AS other, event_time
        FROM {{ev_call}} WHERE event_type = 'call_bridged'
    ) b
    WHERE leg IS NOT NULL
    GROUP BY leg
),
legs AS (
    SELECT call_id FROM facts UNION SELECT call_id FROM bridges
),
rooms AS (
    SELECT call_id, min(event_time) AS room_joined_at FROM {{ev_conference}}
    WHERE event_type = 'conference_joined' AND call_id IS NOT NULL
    GROUP BY call_id
),
hold_ev AS (
    SELECT call_id, event_type, event_time, sequence, received_at, event_id
    FROM {{ev_media}}
    WHERE call_id IS NOT NULL
      AND event_type IN ('media_hold_started', 'media_hold_stopped')
),
hold_agg AS (
    SELECT call_id,
        count(*) FILTER (event_type = 'media_hold_started') AS n_start,
        count(*) FILTER (event_type = 'media_hold_stopped') AS n_stop,
        sum(epoch_us(event_time)) FILTER (event_type = 'media_hold_started') AS start_us,
        sum(epoch_us(event_time)) FILTER (event_type = 'media_hold_stopped') AS stop_us,
        max(epoch_us(event_time)) FILTER (event_type = 'media_hold_started') AS last_start_us
    FROM hold_ev GROUP BY call_id
),
-- Holds alternate, so the n-th start pairs with the n-th stop and the sums above give the
-- total; only a sequence with a lost event needs that pairing done in order.
odd_ev AS (
    SELECT h.call_id, h.event_type, epoch_us(h.event_time) AS us,
        row_number() OVER (PARTITION BY h.call_id, h.event_type ORDER BY {ORDER}) AS n
    FROM hold_ev h JOIN hold_agg a USING (call_id)
    WHERE a.n_stop > a.n_start OR a.n_start > a.n_stop + 1
),
odd_holds AS (
    SELECT s.call_id, sum(e.us - s.us) AS paired_us,
        list(s.us) FILTER (e.us IS NULL) AS open_starts
    FROM odd_ev s
    LEFT JOIN odd_ev e
        ON e.call_id = s.call_id AND e.n = s.n AND e.event_type = 'media_hold_stopped'
    WHERE s.event_type = 'media_hold_started'
    GROUP BY s.call_id
),
transfers AS (
    SELECT call_id,
        count(*) FILTER (event_type = 'call_transferred') AS transfer_count,
        count(*) FILTER (event_type = 'call_transfer_accepted') AS transfer_attempts,
        count(*) FILTER (event_type = 'call_transfer_failed') AS transfer_failures,
        arg_max(transfer_target, event_time) FILTER (event_type = 'call_transferred')
            AS transfer_target
    FROM {{ev_transfer}} WHERE call_id IS NOT NULL GROUP BY call_id
),
queued AS (
    SELECT call_id,
        arg_max(queue_id, struct_pack(joined_at, joined_sequence)) AS last_queue_id,
        min(connected_at) AS agent_connected_at,
        arg_min(agent_id, connected_at) AS queue_agent_id,
        min(joined_at) AS first_joined_at,
        arg_max(coalesce(connected_at, left_at), struct_pack(joined_at, joined_sequence))
            AS last_stay_end_at,
        arg_max(result, struct_pack(joined_at, joined_sequence)) AS queue_result,
        count(*) AS queue_stays
    FROM {{tgt}}.queue_calls
    WHERE {{all_calls}} OR call_id IN {{scope_calls}}
    GROUP BY call_id
),
ivr AS (
    SELECT call_id,
        arg_min(app_id, ivr_index) FILTER (ivr_kind = 'tree') AS ivr_app_id,
        arg_max(final_result, ivr_index) AS ivr_result,
        arg_max(final_routing_target, ivr_index) AS ivr_routing_target,
        count(*) AS ivr_runs
    FROM {{tgt}}.ivr_paths
    WHERE {{all_calls}} OR call_id IN {{scope_calls}}
    GROUP BY call_id
),
recs AS (
    SELECT call_id, count(*) AS recording_count,
        count(*) FILTER (status = 'available') AS recordings_available
    FROM {{tgt}}.recordings
    WHERE {{all_calls}} OR call_id IN {{scope_calls}}
    GROUP BY call_id
),
assembled AS (
    SELECT l.call_id,
        f.* EXCLUDE (call_id, hup, created_direction, created_caller, created_callee),
        b.bridged_at, b.bridged_with,
        f.hup.reason AS hangup_reason, f.hup.hangup_by AS hangup_by,
        f.hup.sip_status AS sip_status,
        CASE WHEN f.created_ev_at IS NOT NULL THEN f.created_direction
             ELSE un.info.direction END AS direction,
        CASE WHEN f.created_ev_at IS NOT NULL THEN f.created_caller
             ELSE un.info.caller END AS caller,
        CASE WHEN f.created_ev_at IS NOT NULL THEN f.created_callee
             ELSE un.info.callee END AS callee,
        ci.session_id, ci.uuid,
        t.* EXCLUDE (call_id), q.* EXCLUDE (call_id), i.* EXCLUDE (call_id),
        r.* EXCLUDE (call_id), h.* EXCLUDE (call_id), o.paired_us, o.open_starts,
        coalesce(f.created_ev_at, least(f.first_event_at, b.bridged_at)) AS created_at,
        CASE WHEN q.queue_stays IS NOT NULL THEN q.agent_connected_at
             ELSE coalesce(f.call_answered_at, m.room_joined_at, b.bridged_at)
        END AS answered_at,
        coalesce(f.hangup_at, f.busy_at, f.no_answer_at) AS ended_at
    FROM legs l
    LEFT JOIN facts f ON f.call_id = l.call_id
    LEFT JOIN uncreated un ON un.call_id = l.call_id
    LEFT JOIN rwi_call_info ci ON ci.call_id = l.call_id
    LEFT JOIN bridges b ON b.call_id = l.call_id
    LEFT JOIN transfers t ON t.call_id = l.call_id
    LEFT JOIN queued q ON q.call_id = l.call_id
    LEFT JOIN ivr i ON i.call_id = l.call_id
    LEFT JOIN recs r ON r.call_id = l.call_id
    LEFT JOIN rooms m ON m.call_id = l.call_id
    LEFT JOIN hold_agg h ON h.call_id = l.call_id
    LEFT JOIN odd_holds o ON o.call_id = l.call_id
)
SELECT
    a.call_id,
    coalesce(a.session_id, a.call_id) AS session_id,
    a.direction,
    a.caller,
    a.callee,
    a.caller_name,
    a.callee_name,
    a.trunk,
    a.created_at,
    a.ringing_at,
    a.answered_at,
    a.bridged_at,
    a.ended_at,
    rwi_ms(a.ringing_at, coalesce(a.answered_at, a.ended_at)) AS ring_ms,
    rwi_ms(a.answered_at, a.ended_at) AS talk_ms,
    -- A hold still open at the end lasts until the end; one still open on a live call
    -- is not counted yet.
    coalesce(rwi_us_to_ms(CASE
        WHEN a.n_start IS NULL THEN 0
        WHEN a.paired_us IS NOT NULL OR a.open_starts IS NOT NULL
            THEN coalesce(a.paired_us, 0) + CASE WHEN a.ended_at IS NULL THEN 0 ELSE
                 coalesce(len(a.open_starts) * epoch_us(a.ended_at) - list_sum(a.open_starts),
                          0) END
        WHEN a.n_start = a.n_stop THEN a.stop_us - a.start_us
        WHEN a.ended_at IS NOT NULL THEN coalesce(a.stop_us, 0) - a.start_us + epoch_us(a.ended_at)
        ELSE coalesce(a.stop_us, 0) - (a.start_us - a.last_start_us)
    END), 0)::BIGINT AS hold_ms,
    rwi_ms(a.created_at, a.ended_at) AS total_ms,
    CASE
        WHEN a.ended_at IS NULL THEN 'in_progress'
        WHEN a.answered_at IS NOT NULL THEN 'answered'
        WHEN a.busy_at IS NOT NULL THEN 'busy'
        WHEN a.no_answer_at IS NOT NULL THEN 'no_answer'
        WHEN a.hangup_reason = 'abandoned' THEN 'abandoned'
        -- The caller (or the system) ended a call an app (IVR, queue) was handling.
        WHEN a.hangup_reason IN ('caller', 'system')
             AND (coalesce(a.queue_stays, 0) > 0 OR coalesce(a.ivr_runs, 0) > 0)
            THEN 'abandoned'
        WHEN a.hangup_reason IN ('caller', 'canceled', 'cancelled') THEN 'canceled'
        WHEN a.hangup_reason IN ('noAnswer', 'autohangup') THEN 'no_answer'
        WHEN a.hangup_reason = 'rejected' AND a.sip_status IN (486, 600) THEN 'busy'
        WHEN a.hangup_reason = 'rejected' THEN 'rejected'
        ELSE 'failed'
    END AS outcome,
    a.hangup_reason,
    a.hangup_by,
    a.sip_status,
    coalesce(a.transfer_count, 0)::INTEGER AS transfer_count,
    coalesce(a.n_start, 0)::INTEGER AS hold_count,
    a.last_queue_id AS queue_id,
    rwi_ms(a.first_joined_at, a.last_stay_end_at) AS queue_wait_ms,
    a.queue_result,
    coalesce(a.queue_stays, 0)::INTEGER AS queue_stays,
    a.queue_agent_id AS agent_id,
    a.ivr_app_id,
    a.ivr_result,
    a.ivr_routing_target,
    coalesce(a.ivr_runs, 0)::INTEGER AS ivr_runs,
    coalesce(a.recording_count, 0)::INTEGER AS recording_count,
    coalesce(a.recordings_available, 0)::INTEGER AS recordings_available,
    coalesce(a.transfer_attempts, 0)::INTEGER AS transfer_attempts,
    coalesce(a.transfer_failures, 0)::INTEGER AS transfer_failures,
    a.transfer_target,
    a.bridged_with,
    coalesce(a.ringing_count, 0)::INTEGER AS ringing_count,
    a.root_call_id,
    a.uuid,
    a.called_phone,
    a.pbx,
    a.created_sequence,
    a.ended_at IS NOT NULL AS complete,
    CAST(timezone('UTC', a.created_at) AS DATE) AS day,
    a.dialect
FROM assembled a
"""

SESSIONS = """
WITH legs AS (
    SELECT session_id, call_id, created_at, created_sequence, answered_at, ended_at, talk_ms,
        hold_ms, transfer_count, recording_count, queue_id, agent_id, ivr_app_id, outcome,
        complete, direction, caller, callee, trunk, dialect, day
    FROM {tgt}.calls WHERE {all_sessions} OR session_id IN {scope_sessions}
),
sizes AS (
    SELECT session_id, count(*) AS leg_count FROM legs GROUP BY session_id
),
-- Most logical calls have one leg: the session is that leg.
single AS (
    SELECT l.session_id, l.call_id AS first_call_id, 1 AS leg_count, [l.call_id] AS call_ids,
        l.direction, l.caller, l.callee, l.trunk, l.created_at AS started_at, l.answered_at,
        l.answered_at IS NOT NULL AS answered, l.ended_at,
        rwi_ms(l.created_at, l.ended_at) AS total_ms, l.talk_ms, l.hold_ms, l.transfer_count,
        l.recording_count, l.queue_id, l.agent_id, l.ivr_app_id, l.outcome, l.complete, l.day,
        l.dialect
    FROM legs l JOIN sizes z ON z.session_id = l.session_id AND z.leg_count = 1
),
grouped AS (
    SELECT l.session_id,
        arg_min(struct_pack(call_id, direction, caller, callee, trunk, dialect, outcome),
                struct_pack(created_at, created_sequence, call_id)) AS first_leg,
        count(*) AS leg_count,
        list_sort(list(struct_pack(created_at, created_sequence, call_id))) AS keys,
        min(created_at) AS started_at,
        min(answered_at) AS answered_at,
        bool_or(answered_at IS NOT NULL) AS answered,
        bool_and(complete) AS complete,
        max(ended_at) AS last_end_at,
        sum(talk_ms) AS talk_ms,
        sum(hold_ms) AS hold_ms,
        sum(transfer_count) AS transfer_count,
        sum(recording_count) AS recording_count,
        arg_min(queue_id, struct_pack(created_at, created_sequence, call_id)) AS queue_id,
        arg_min(agent_id, struct_pack(answered_at, call_id)) AS agent_id,
        arg_min(ivr_app_id, struct_pack(created_at, created_sequence, call_id)) AS ivr_app_id,
        bool_or(outcome = 'answered') AS any_answered,
        bool_or(outcome = 'in_progress') AS any_up
    FROM legs l JOIN sizes z ON z.session_id = l.session_id AND z.leg_count > 1
    GROUP BY l.session_id
),
multi AS (
    SELECT session_id, first_leg.call_id AS first_call_id, leg_count,
        list_transform(keys, lambda k: k.call_id) AS call_ids,
        first_leg.direction AS direction, first_leg.caller AS caller,
        first_leg.callee AS callee, first_leg.trunk AS trunk,
        started_at, answered_at, answered,
        CASE WHEN complete THEN last_end_at END AS ended_at,
        CASE WHEN complete THEN rwi_ms(started_at, last_end_at) END AS total_ms,
        talk_ms, hold_ms, transfer_count, recording_count, queue_id, agent_id, ivr_app_id,
        CASE WHEN any_answered THEN 'answered' WHEN any_up THEN 'in_progress'
             ELSE first_leg.outcome END AS outcome,
        complete,
        CAST(timezone('UTC', started_at) AS DATE) AS day,
        first_leg.dialect AS dialect
    FROM grouped
)
SELECT session_id, first_call_id, leg_count::INTEGER AS leg_count, call_ids, direction,
    caller, callee, trunk, started_at, answered_at, answered, ended_at,
    total_ms::BIGINT AS total_ms, talk_ms::BIGINT AS talk_ms, hold_ms::BIGINT AS hold_ms,
    transfer_count::INTEGER AS transfer_count, recording_count::INTEGER AS recording_count,
    queue_id, agent_id, ivr_app_id, outcome, complete, day, dialect
FROM (SELECT * FROM single UNION ALL BY NAME SELECT * FROM multi)
"""
