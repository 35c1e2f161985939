"""``analytics.agent_states``: one row per interval an agent spent in one state.

Each ``agent_state_changed`` opens an interval in its ``to_status`` that the agent's next
change closes; the last interval of an agent stays open (``ended_at`` null). Agents are
told apart per PBX: agent 1001 of one PBX is not agent 1001 of another.
"""

ORDER = "event_time, sequence, received_at, event_id"

AGENT_STATES = f"""
WITH ev AS (
    SELECT * FROM {{ev_agent}}
    WHERE event_type = 'agent_state_changed' AND agent_id IS NOT NULL
),
seq AS (
    SELECT *,
        lead(event_time) OVER (PARTITION BY pbx, agent_id ORDER BY {ORDER}) AS next_at,
        row_number() OVER (PARTITION BY pbx, agent_id ORDER BY {ORDER}) - 1 AS state_index
    FROM ev
)
SELECT
    pbx,
    agent_id,
    state_index::INTEGER AS state_index,
    to_status AS state,
    from_status AS previous_state,
    event_time AS started_at,
    next_at AS ended_at,
    (rwi_ms(event_time, next_at))::BIGINT AS duration_ms,
    reason_code,
    call_id,
    agent_name,
    agent_extension,
    team_id,
    duration_secs AS previous_state_secs,
    CASE
        WHEN to_status = 'idle' THEN 'available'
        WHEN to_status IN ('ringing', 'busy', 'wrapup') THEN 'handling'
        WHEN to_status = 'offline' THEN 'offline'
        ELSE 'not_ready'
    END AS state_group,
    CAST(timezone('UTC', event_time) AS DATE) AS day,
    dialect
FROM seq
"""
