"""``analytics.ivr_node_visits`` and ``analytics.ivr_paths``.

A visit is an ``ivr_node_entered`` (ended by the ``ivr_node_exited`` of the same node and
occurrence: a node's visits never overlap) or, for step-mode IVRs, one ``ivr_step_trace``.
A call's visits are cut into traversals (``ivr_index``) by the traversals' ends:
``ivr_flow_completed`` and step traces that end their session (``end_reason`` today, a
terminal/error ``result_kind`` in 1.0); a visit belongs to the traversal after the last one
that ended before it began. Node times come from the payload's own ``entry_time``,
``exit_time`` and ``completion_time`` (exact in both dialects), else the event time. Paths
are built from the visits and the ending events."""

ORDER = "event_time, sequence, received_at, event_id"
_RUN_END = """(event_type = 'ivr_flow_completed'
         OR (event_type = 'ivr_step_trace'
             AND (end_reason IS NOT NULL OR result_kind IN ('terminal', 'error'))))"""

NODE_VISITS = f"""
WITH ends AS (
    SELECT call_id,
        list(coalesce(try_cast(coalesce(completion_time, step_end_time) AS TIMESTAMPTZ),
                      event_time)) AS end_times
    FROM {{ev_ivr}}
    WHERE call_id IS NOT NULL AND {_RUN_END}
    GROUP BY call_id
),
entered AS (
    SELECT call_id, event_id, event_time, sequence, received_at, dialect, node_id, node_name,
        node_type, app_id, previous_node_id,
        coalesce(try_cast(entry_time AS TIMESTAMPTZ), event_time) AS entered_at
    FROM {{ev_ivr}}
    WHERE call_id IS NOT NULL AND event_type = 'ivr_node_entered'
),
exited AS (
    SELECT call_id, node_id, result_value, duration_ms, next_node_id, hangup_reason, call_result,
        event_extra, coalesce(try_cast(exit_time AS TIMESTAMPTZ), event_time) AS exited_at
    FROM {{ev_ivr}}
    WHERE call_id IS NOT NULL AND event_type = 'ivr_node_exited'
),
exit_occ AS (
    -- A node exited once in its call (nearly all): that exit closes its only entry.
    SELECT call_id, node_id, any_value(exited_at) AS exited_at, 0 AS occ,
        any_value(result_value) AS result_value, any_value(duration_ms) AS duration_ms,
        any_value(next_node_id) AS next_node_id, any_value(hangup_reason) AS hangup_reason,
        any_value(call_result) AS call_result, any_value(event_extra) AS event_extra
    FROM exited WHERE node_id IS NOT NULL
    GROUP BY call_id, node_id HAVING count(*) = 1
    UNION ALL
    -- The n-th exit of a node closes its n-th entry (a node's visits never overlap).
    SELECT a.call_id, a.node_id, a.exited_at,
        count(*) FILTER (b.exited_at < a.exited_at) AS occ,
        any_value(a.result_value) AS result_value, any_value(a.duration_ms) AS duration_ms,
        any_value(a.next_node_id) AS next_node_id, any_value(a.hangup_reason) AS hangup_reason,
        any_value(a.call_result) AS call_result, any_value(a.event_extra) AS event_extra
    FROM exited a JOIN exited b ON b.call_id = a.call_id AND b.node_id = a.node_id
    WHERE (a.call_id, a.node_id) IN (
        SELECT call_id, node_id FROM exited GROUP BY call_id, node_id HAVING count(*) > 1)
    GROUP BY a.call_id, a.node_id, a.exited_at
),
visits AS (
    -- A step trace is a whole visit: its exit facts travel with it.
    SELECT n.call_id, 'tree' AS ivr_kind, n.node_id, n.node_name, n.node_type, n.app_id,
        n.entered_at, n.previous_node_id, n.dialect,
        n.event_time, n.sequence, n.received_at, n.event_id,
        NULL AS step_exited_at, NULL AS step_reported_ms, NULL AS step_result_value,
        NULL AS step_hangup_reason, NULL AS step_call_result, NULL AS step_action_type,
        NULL AS step_error
    FROM entered n
    UNION ALL
    SELECT call_id, 'step' AS ivr_kind,
        coalesce(step_id, 'step_' || step_index::VARCHAR) AS node_id,
        step_name AS node_name, action_type AS node_type, app_id,
        coalesce(try_cast(step_start_time AS TIMESTAMPTZ), event_time) AS entered_at,
        NULL AS previous_node_id, dialect, event_time, sequence, received_at, event_id,
        try_cast(step_end_time AS TIMESTAMPTZ) AS step_exited_at,
        duration_ms AS step_reported_ms, trigger_type AS step_result_value,
        end_reason AS step_hangup_reason, result_kind AS step_call_result,
        action_type AS step_action_type, error AS step_error
    FROM {{ev_ivr}}
    WHERE call_id IS NOT NULL AND event_type = 'ivr_step_trace'
),
keyed AS (
    -- The traversal a visit belongs to: how many traversals had ended when it began.
    SELECT v.*,
        coalesce(len(list_filter(e.end_times, lambda t: t < v.entered_at)), 0) AS ivr_index,
        struct_pack(v.entered_at, v.event_time, v.sequence, v.received_at, v.event_id) AS vkey
    FROM visits v LEFT JOIN ends e USING (call_id)
),
ranks AS (
    -- Visits of one call are few: counting the earlier ones beats sorting them all. The
    -- app of a traversal is its first tree visit's, else its first visit's.
    SELECT a.event_id,
        count(*) FILTER (b.ivr_index = a.ivr_index AND b.vkey < a.vkey) AS visit_index,
        count(*) FILTER (b.vkey < a.vkey) AS call_visit_index,
        count(*) FILTER (b.node_id = a.node_id AND b.ivr_kind = 'tree' AND b.vkey < a.vkey)
            AS node_occ,
        coalesce(
            arg_min(b.app_id, b.entered_at) FILTER (
                b.ivr_index = a.ivr_index AND b.app_id IS NOT NULL AND b.ivr_kind = 'tree'),
            arg_min(b.app_id, b.entered_at) FILTER (
                b.ivr_index = a.ivr_index AND b.app_id IS NOT NULL)) AS run_app_id
    FROM keyed a JOIN keyed b ON b.call_id = a.call_id
    GROUP BY a.event_id
),
joined AS (
    SELECT v.*, r.visit_index, r.call_visit_index, r.run_app_id,
        coalesce(x.exited_at, v.step_exited_at) AS exited_at,
        coalesce(x.duration_ms, v.step_reported_ms) AS reported_ms,
        coalesce(x.result_value, v.step_result_value) AS result_value,
        x.next_node_id,
        coalesce(x.hangup_reason, v.step_hangup_reason) AS hangup_reason,
        coalesce(x.call_result, v.step_call_result) AS call_result,
        coalesce(json_extract_string(x.event_extra, '$.action_type'), v.step_action_type)
            AS action_type
    FROM keyed v
    JOIN ranks r USING (event_id)
    LEFT JOIN exit_occ x ON v.ivr_kind = 'tree' AND x.call_id = v.call_id
        AND x.node_id = v.node_id AND x.occ = r.node_occ
)
SELECT
    v.call_id, v.run_app_id AS app_id, v.ivr_index::INTEGER AS ivr_index,
    v.visit_index::INTEGER AS visit_index, v.call_visit_index::INTEGER AS call_visit_index,
    v.ivr_kind, v.node_id, v.node_name, v.node_type, v.entered_at, v.exited_at,
    coalesce(v.reported_ms, rwi_ms(v.entered_at, v.exited_at))::BIGINT AS dwell_ms,
    v.result_value,
    CASE WHEN length(v.result_value) = 1 AND v.result_value SIMILAR TO '[0-9*#]'
         THEN v.result_value END AS digit,
    v.next_node_id, v.previous_node_id, v.action_type, v.hangup_reason, v.call_result,
    v.step_error, v.dialect
FROM joined v
"""

PATHS = f"""
WITH ends AS (
    SELECT event_id, event_type, call_id, event_time, sequence, received_at, dialect, app_id,
        completion_time, final_result, final_routing_target, total_duration_ms, end_reason,
        result_kind, from_app_id, to_app_id
    FROM {{ev_ivr}}
    WHERE call_id IS NOT NULL
      AND ({_RUN_END} OR event_type = 'ivr_flow_transitioned')
),
numbered AS (
    -- A run ending event closes traversal n (its count of earlier run ends); 1.0's
    -- transition to another app follows the completion of the app it leaves.
    SELECT *,
        count(*) FILTER (event_type <> 'ivr_flow_transitioned') OVER (
            PARTITION BY call_id ORDER BY {ORDER}
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
    FROM ends
),
runs AS (
    SELECT call_id, before AS ivr_index,
        arg_min(try_cast(completion_time AS TIMESTAMPTZ), event_time)
            FILTER (event_type = 'ivr_flow_completed') AS completion_at,
        min(event_time) FILTER (event_type = 'ivr_flow_completed') AS completed_event_at,
        arg_min(final_result, event_time) FILTER (event_type = 'ivr_flow_completed')
            AS final_result,
        arg_min(final_routing_target, event_time) FILTER (event_type = 'ivr_flow_completed')
            AS final_routing_target,
        arg_min(total_duration_ms, event_time) FILTER (event_type = 'ivr_flow_completed')
            AS reported_total_ms,
        arg_min(end_reason, event_time) FILTER (event_type = 'ivr_step_trace') AS step_end_reason,
        arg_min(result_kind, event_time) FILTER (event_type = 'ivr_step_trace')
            AS step_result_kind,
        arg_min(app_id, event_time) AS end_app_id,
        arg_min(dialect, event_time) AS dialect
    FROM numbered WHERE event_type <> 'ivr_flow_transitioned'
    GROUP BY call_id, before
),
jumps AS (
    SELECT call_id, before - 1 AS ivr_index, from_app_id,
        arg_min(to_app_id, event_time) AS to_app_id
    FROM numbered WHERE event_type = 'ivr_flow_transitioned'
    GROUP BY call_id, before - 1, from_app_id
),
visits AS (
    SELECT call_id, ivr_index, app_id, ivr_kind, visit_index, node_id, dwell_ms, digit,
        entered_at, exited_at, hangup_reason, call_result, dialect
    FROM {{tgt}}.ivr_node_visits
    WHERE {{all_calls}} OR call_id IN {{scope_calls}}
),
per_run AS (
    SELECT call_id, ivr_index, any_value(app_id) AS app_id, any_value(ivr_kind) AS ivr_kind,
        list_sort(list(struct_pack(i := visit_index, n := node_id, d := dwell_ms, g := digit)))
            AS steps,
        count(*) AS node_count,
        min(entered_at) AS first_entered_at,
        max(coalesce(exited_at, entered_at)) AS last_exited_at,
        bool_or(ivr_kind = 'tree' AND (hangup_reason IS NOT NULL OR call_result = 'hangup'))
            AS hung_up_in_node,
        any_value(dialect) AS dialect
    FROM visits GROUP BY call_id, ivr_index
)
SELECT
    coalesce(r.call_id, p.call_id) AS call_id,
    coalesce(r.ivr_index, p.ivr_index)::INTEGER AS ivr_index,
    coalesce(p.app_id, r.end_app_id) AS app_id,
    coalesce(p.ivr_kind, CASE WHEN r.final_result IS NULL THEN 'step' ELSE 'tree' END)
        AS ivr_kind,
    coalesce(list_transform(p.steps, lambda s: s.n), []::VARCHAR[]) AS path,
    coalesce(array_to_string(list_filter(list_transform(p.steps, lambda s: s.g),
                                         lambda g: g IS NOT NULL), ''), '') AS digits,
    coalesce(p.node_count, 0)::INTEGER AS node_count,
    list_transform(p.steps, lambda s: s.d) AS dwell_ms_per_node,
    p.first_entered_at AS started_at,
    coalesce(r.completion_at, r.completed_event_at, p.last_exited_at) AS ended_at,
    coalesce(r.reported_total_ms,
             rwi_ms(p.first_entered_at,
                    coalesce(r.completion_at, r.completed_event_at, p.last_exited_at)))::BIGINT
        AS total_ms,
    coalesce(r.final_result, r.step_end_reason, r.step_result_kind) AS final_result,
    r.final_routing_target,
    p.steps[-1].n AS exit_node_id,
    coalesce(j.to_app_id,
             CASE WHEN r.final_routing_target LIKE 'ivr:%'
                  THEN substr(r.final_routing_target, 5) END) AS next_app_id,
    (coalesce(p.hung_up_in_node, false)
     OR coalesce(r.final_result IN ('abandoned', 'remote_hangup', 'cancelled', 'canceled'),
                 false)
     OR coalesce(r.step_end_reason IN ('user_hangup', 'hangup'), false)) AS abandoned,
    coalesce(r.dialect, p.dialect) AS dialect
FROM runs r
FULL JOIN per_run p ON p.call_id = r.call_id AND p.ivr_index = r.ivr_index
LEFT JOIN jumps j ON j.call_id = coalesce(r.call_id, p.call_id)
    AND j.ivr_index = coalesce(r.ivr_index, p.ivr_index)
    AND j.from_app_id = coalesce(p.app_id, r.end_app_id)
"""
