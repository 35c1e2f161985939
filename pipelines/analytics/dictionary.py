"""The data dictionary: every analytics table and column in business words.

``python -m pipelines.analytics.dictionary > pipelines/analytics/DICTIONARY.md`` renders it;
a test checks that it names exactly the columns the models build.
"""

from __future__ import annotations

import sys

Columns = dict[str, str]

_DIALECT = "Which protocol the PBX spoke for these events: `v1.0` or `current`."
_DAY = "The UTC date the call leg was created; daily rollups use it."

TABLES: dict[str, tuple[str, Columns]] = {
    "calls": (
        "One row per call leg (one SIP dialog): who called whom, when it rang, was answered "
        "and ended, how long each phase took, how it ended, and what happened in between "
        "(IVR, queue, agent, holds, transfers, recordings). A leg that has not ended yet "
        "has `complete = false` and outcome `in_progress`.",
        {
            "call_id": "The leg's call id (the SIP Call-ID for inbound calls).",
            "session_id": "The logical call the leg belongs to: today's `session_id` (the last "
            "one its events carry; an attended transfer moves the consult leg into the "
            "transferee's call), 1.0's `root_call_id`, else the call id itself.",
            "direction": "`inbound`, `outbound` or `internal`.",
            "caller": "Caller SIP URI as the PBX reported it.",
            "callee": "Called SIP URI.",
            "caller_name": "Caller number (user part of the URI) when the PBX sent it.",
            "callee_name": "Called number / DNIS when the PBX sent it.",
            "trunk": "SIP trunk the call came in on, when known.",
            "created_at": "When the PBX created the leg (`call_created` / `call_incoming`).",
            "ringing_at": "First time the called side rang.",
            "answered_at": "When a person or the far end answered: the agent connecting for a "
            "queued call, `call_answered` for direct calls and originates, joining a dial-in "
            "conference room, or the first bridge. An IVR picking up is not an answer.",
            "bridged_at": "First time the leg was bridged to another leg.",
            "ended_at": "When the leg ended (hangup, or busy / no answer for originates).",
            "ring_ms": "Milliseconds from first ringing to answer, or to the end if never "
            "answered.",
            "talk_ms": "Milliseconds from answer to end (holds included); null if never "
            "answered or not ended.",
            "hold_ms": "Milliseconds spent on hold (a hold still open at the end counts until "
            "the end).",
            "total_ms": "Milliseconds from creation to end.",
            "outcome": "How the leg ended: `answered`, `no_answer`, `busy`, `rejected`, "
            "`canceled`, `abandoned` (the caller gave up in the IVR or the queue), `failed`, "
            "or `in_progress` while it is still up. Transfers are not an outcome.",
            "hangup_reason": "The PBX's hangup reason (`caller`, `callee`, `refer`, "
            "`abandoned`, `noAnswer`, `rejected`, …).",
            "hangup_by": "Who hung up (`caller`, `agent`, `callee`, `system`, `transfer`); "
            "today's builds only.",
            "sip_status": "SIP status code of the hangup, when there was one.",
            "transfer_count": "Completed transfers of this leg (`call_transferred`).",
            "hold_count": "Times the leg was put on hold.",
            "queue_id": "The last queue the call waited in.",
            "queue_wait_ms": "Milliseconds from first joining a queue to the agent connecting, "
            "or to leaving the last queue.",
            "queue_result": "How the last queue stay ended (see `queue_calls.result`).",
            "queue_stays": "Number of queue stays (more than one after an overflow).",
            "agent_id": "The agent the queue connected the call to (a SIP URI on builds "
            "without an agent registry).",
            "ivr_app_id": "The first menu IVR application the call went through.",
            "ivr_result": "Final result of the last IVR traversal (`transferred`, `hangup`, …).",
            "ivr_routing_target": "Where the last IVR traversal sent the call.",
            "ivr_runs": "IVR traversals (menu and step-mode) on the leg.",
            "recording_count": "Recordings made of the leg (failed ones included).",
            "recordings_available": "Recordings whose file has been uploaded.",
            "transfer_attempts": "Transfers started (`call_transfer_accepted`).",
            "transfer_failures": "Transfers that failed or were cancelled.",
            "transfer_target": "Target of the last completed transfer.",
            "bridged_with": "The other leg of the first bridge.",
            "ringing_count": "Ringing events (one per agent tried for a queued call).",
            "root_call_id": "1.0's root call id, as sent.",
            "uuid": "1.0's global call UUID (links recordings), as sent.",
            "called_phone": "Actual dialled number (outbound), when sent.",
            "pbx": "Name of the PBX instance the events came from.",
            "created_sequence": "1.0 sequence number of the leg's first event (orders legs "
            "created within the same second).",
            "complete": "Whether the leg has ended.",
            "day": _DAY,
            "dialect": _DIALECT,
        },
    ),
    "sessions": (
        "One row per logical call: the legs that belong together (transfers, consults, "
        "originated pairs), joined by `session_id`.",
        {
            "session_id": "The logical call id (see `calls.session_id`).",
            "first_call_id": "The leg that started the logical call.",
            "leg_count": "Number of legs.",
            "call_ids": "The legs, in order of creation.",
            "direction": "Direction of the first leg.",
            "caller": "Caller of the first leg.",
            "callee": "Callee of the first leg.",
            "trunk": "Trunk of the first leg.",
            "started_at": "When the first leg was created.",
            "answered_at": "First answer of any leg.",
            "answered": "Whether any leg was answered.",
            "ended_at": "When the last leg ended; null while any leg is up.",
            "total_ms": "Milliseconds from the first leg's creation to the last leg's end.",
            "talk_ms": "Talk time summed over the legs.",
            "hold_ms": "Hold time summed over the legs.",
            "transfer_count": "Transfers summed over the legs.",
            "recording_count": "Recordings summed over the legs.",
            "queue_id": "First queue any leg waited in.",
            "agent_id": "First agent connected.",
            "ivr_app_id": "First IVR application used.",
            "outcome": "`answered` if any leg was, `in_progress` while any leg is up, else "
            "the first leg's outcome.",
            "complete": "Whether every leg has ended.",
            "day": "The UTC date the first leg was created.",
            "dialect": _DIALECT,
        },
    ),
    "ivr_paths": (
        "One row per IVR traversal (one application, entered to completed): the ordered "
        "nodes, keys pressed, time spent, where it sent the caller and whether the caller "
        "hung up inside it. Menu IVRs (`ivr_kind = 'tree'`) and step-mode bots (`'step'`, "
        "one node per provider step).",
        {
            "call_id": "The call leg.",
            "ivr_index": "Order of this traversal within the call (0 = first).",
            "app_id": "IVR application (null for today's step-mode bots, which do not name "
            "it).",
            "ivr_kind": "`tree` (menu IVR) or `step` (provider-driven step mode).",
            "path": "Node ids in the order visited (repeats included).",
            "digits": "DTMF keys pressed along the path, in order.",
            "node_count": "Nodes visited.",
            "dwell_ms_per_node": "Milliseconds spent at each node, aligned with `path`.",
            "started_at": "Entry into the first node.",
            "ended_at": "Completion of the traversal.",
            "total_ms": "Milliseconds in this IVR application.",
            "final_result": "How it ended (`transferred`, `hangup`, `abandoned`, "
            "`remote_hangup`; step mode: the session end reason).",
            "final_routing_target": "Where it sent the call (`queue:sales`, `ivr:ivr_tech`, "
            "`voicemail`).",
            "exit_node_id": "The last node visited.",
            "next_app_id": "The IVR application it jumped to, if any.",
            "abandoned": "The caller hung up inside this IVR.",
            "dialect": _DIALECT,
        },
    ),
    "ivr_node_visits": (
        "One row per visit of one IVR node: for funnels and drop-off analysis.",
        {
            "call_id": "The call leg.",
            "app_id": "IVR application.",
            "ivr_index": "The traversal this visit belongs to (see `ivr_paths.ivr_index`).",
            "visit_index": "Order of the visit within its traversal (0 = first node).",
            "call_visit_index": "Order of the visit within the whole call.",
            "ivr_kind": "`tree` or `step`.",
            "node_id": "Node id (step mode: the step id).",
            "node_name": "Node name.",
            "node_type": "Node type (`menu`, `prompt`, …; step mode: the action type).",
            "entered_at": "When the caller entered the node.",
            "exited_at": "When the caller left it.",
            "dwell_ms": "Milliseconds at the node.",
            "result_value": "What happened there: the key pressed, `timeout`, or the branch "
            "taken (step mode: what triggered the step).",
            "digit": "The DTMF key pressed, when the result was a key.",
            "next_node_id": "The node the caller went to next, if within the same IVR.",
            "previous_node_id": "The node the caller came from.",
            "action_type": "Kind of action the exit led to (`queue`, `menu`, `jump_ivr`, …).",
            "hangup_reason": "Why the call ended at this node, if it did (step mode: the "
            "session end reason).",
            "call_result": "Call result reported at exit (`hangup` when the caller left; "
            "step mode: terminal / continue / error).",
            "step_error": "Step-mode provider error.",
            "dialect": _DIALECT,
        },
    ),
    "recordings": (
        "One row per recording of a call leg, from start (or automatic start) to upload: "
        "file, size, length, where to download it and its status. Late uploads update the "
        "row.",
        {
            "call_id": "The recorded call leg.",
            "recording_id": "Recording id (the PBX's `unique_id`; 1.0: the call UUID).",
            "recording_index": "Order of the recording within the call (0 = first).",
            "session_id": "The logical call.",
            "filename": "File name (after upload: the archived file's name).",
            "file_size": "Bytes.",
            "duration_secs": "Length of the recording in whole seconds.",
            "download_url": "Where to fetch the file (URL or archive path).",
            "started_at": "When recording started (null for today's automatic recordings, "
            "whose start the PBX does not report).",
            "stopped_at": "When recording stopped.",
            "failed_at": "When recording failed (1.0 `record_failed`).",
            "paused_at": "First pause.",
            "resumed_at": "First resume.",
            "pause_count": "Times paused.",
            "paused_ms": "Milliseconds paused.",
            "uploaded_at": "When the upload completed, as the PBX reports it.",
            "metadata_at": "When the upload metadata event arrived.",
            "record_end_at": "When `record_end` arrived.",
            "status": "`recording`, `paused`, `stopped` (file not uploaded yet), `available` "
            "(uploaded) or `failed`.",
            "error": "Failure message.",
            "agent_id": "Agent on the recorded call, when the PBX says.",
            "agent_name": "Agent name, when the PBX says.",
            "call_type": "`inbound`, `outbound`, `internal` or `consult`, as the PBX says.",
            "call_started_at": "Call start as stated in the recording metadata.",
            "call_ended_at": "Call end as stated in the recording metadata.",
            "recording_segments": "The recorded stretches between pauses (JSON), when sent.",
            "dialect": _DIALECT,
        },
    ),
    "queue_calls": (
        "One row per stay of a call in a queue: how long it waited, how it left, who took "
        "it, and whether it met the service level.",
        {
            "call_id": "The queued call leg.",
            "queue_id": "Queue.",
            "session_id": "The logical call.",
            "joined_at": "When the call joined the queue.",
            "joined_sequence": "1.0 sequence number of the join (orders stays that began "
            "within the same second).",
            "left_at": "When it left (connected, abandoned, timed out, overflowed).",
            "connected_at": "When an agent answered.",
            "wait_ms": "Milliseconds waited (join to leave).",
            "result": "`connected`, `abandoned` (caller hung up), `timeout` (the queue gave "
            "up), `no_agent` (nobody could take it), `overflow` (moved to another queue), "
            "`waiting` while still queued.",
            "leave_reason": "The reason the PBX gave when the call left.",
            "agent_id": "Agent who answered.",
            "offer_count": "Times the call was offered to an agent.",
            "missed_offers": "Offers not answered or rejected.",
            "fallback_action": "What the queue did when it gave up (`voicemail`, `hangup`).",
            "overflow_queue_id": "Queue the call overflowed to.",
            "to_voicemail": "Whether the call went to voicemail from this queue.",
            "max_position": "Worst position in line reported (1.0).",
            "within_service_level": "Answered within the service-level threshold (20 s by "
            "default); null while waiting.",
            "dialect": _DIALECT,
        },
    ),
    "agent_states": (
        "One row per interval an agent spent in one state (idle, ringing, busy, wrapup, "
        "away, …), from the contact-centre state events.",
        {
            "pbx": "The PBX the agent belongs to (agents are told apart per PBX).",
            "agent_id": "Agent.",
            "state_index": "Order of the interval for this agent on its PBX (0 = first).",
            "state": "The state during the interval.",
            "previous_state": "The state before it.",
            "started_at": "When the agent entered the state.",
            "ended_at": "When the agent left it (null: still in it).",
            "duration_ms": "Milliseconds in the state.",
            "reason_code": "Why (`CALL`, `BREAK`, `LOGIN`, …).",
            "call_id": "The call that caused the state, if any.",
            "agent_name": "Agent name.",
            "agent_extension": "Agent's extension.",
            "team_id": "Agent's team.",
            "previous_state_secs": "Seconds in the previous state, as the PBX reported it.",
            "state_group": "`available` (idle), `handling` (ringing, busy, wrapup), "
            "`not_ready` (away, dnd, custom) or `offline`.",
            "day": "UTC date the interval started.",
            "dialect": _DIALECT,
        },
    ),
    "conferences": (
        "One row per conference room.",
        {
            "conf_id": "Conference room id.",
            "created_at": "When the room was created (or first seen).",
            "ended_at": "When it was destroyed or ended.",
            "duration_ms": "Milliseconds from creation to end.",
            "host_call_id": "Host leg when the host ended it.",
            "member_count": "Distinct legs that joined.",
            "mute_count": "Mutes.",
            "merges": "Consult legs merged in.",
            "seat_replacements": "Successful seat replacements.",
            "errors": "Failed operations.",
            "dial_in": "Whether callers dialled into the room (`app=conference`).",
            "status": "`active`, `destroyed`, `ended_by_host` or `auto_ended`.",
            "dialect": _DIALECT,
        },
    ),
    "conference_members": (
        "One row per stay of a call leg in a conference room.",
        {
            "conf_id": "Conference room.",
            "call_id": "Member leg.",
            "stay_index": "Order of this stay for the leg in the room.",
            "joined_at": "When the leg joined.",
            "left_at": "When it left (or the room ended).",
            "duration_ms": "Milliseconds in the room.",
            "dial_in": "Joined by dialling in rather than being added.",
            "leg_id": "The PBX's leg id for dial-in members.",
            "mute_count": "Times the member was muted.",
        },
    ),
    "daily": (
        "One row per UTC day: contact-centre KPIs over the call legs created that day.",
        {
            "day": "UTC date.",
            "calls": "Call legs created.",
            "sessions": "Logical calls.",
            "inbound_calls": "Inbound legs.",
            "outbound_calls": "Outbound legs.",
            "internal_calls": "Internal legs.",
            "answered_calls": "Legs answered.",
            "abandoned_calls": "Legs abandoned (caller gave up in the IVR or the queue).",
            "answer_rate": "Answered / ended legs.",
            "abandon_rate": "Abandoned / ended inbound legs.",
            "avg_talk_ms": "Average talk time of answered legs.",
            "avg_ring_ms": "Average ring time of answered legs.",
            "talk_ms": "Total talk time.",
            "queue_stays": "Queue stays.",
            "queue_connected": "Queue stays answered by an agent.",
            "queue_abandoned": "Queue stays the caller abandoned.",
            "avg_speed_of_answer_ms": "Average wait of queue stays answered.",
            "service_level": "Queue stays answered within the threshold / queue stays ended.",
            "ivr_calls": "Legs that used an IVR.",
            "ivr_contained": "IVR legs that ended in the IVR without reaching a queue, an "
            "agent or a transfer and without the caller hanging up there.",
            "ivr_abandoned": "IVR legs whose caller hung up inside the IVR.",
            "ivr_containment_rate": "`ivr_contained / ivr_calls`.",
            "recordings": "Recordings made.",
        },
    ),
    "daily_queues": (
        "One row per UTC day and queue: queue KPIs.",
        {
            "day": "UTC date the queued call was created.",
            "queue_id": "Queue.",
            "stays": "Queue stays.",
            "connected": "Stays answered by an agent.",
            "abandoned": "Stays the caller abandoned.",
            "timed_out": "Stays the queue gave up on.",
            "no_agent": "Stays nobody could take.",
            "overflowed": "Stays moved to another queue.",
            "avg_speed_of_answer_ms": "Average wait of answered stays.",
            "max_wait_ms": "Longest wait.",
            "avg_abandon_wait_ms": "Average wait before abandoning.",
            "service_level": "Answered within the threshold / stays ended.",
            "abandon_rate": "Abandoned / stays ended.",
        },
    ),
}


def render_markdown() -> str:
    """The dictionary as Markdown (the content of ``DICTIONARY.md``)."""
    out = [
        "# Analytics data dictionary",
        "",
        "The `analytics` schema of the DuckDB database, table by table. Times are UTC "
        "timestamps (microseconds); `*_ms` are integer milliseconds (floor of the exact "
        "difference); a duration is null when one of its ends is unknown. Events delivered "
        "more than once count once. In the 1.0 dialect the PBX stamps events to the whole "
        "second, so call, queue, hold, agent and recording times have whole seconds there "
        "(IVR times carry their own exact timestamps). Generated from "
        "`pipelines/analytics/dictionary.py`; example queries are in "
        "`pipelines/analytics/queries.py`.",
        "",
    ]
    for table, (about, columns) in TABLES.items():
        out += [f"## analytics.{table}", "", about, "", "| column | meaning |", "|---|---|"]
        out += [f"| `{name}` | {text} |" for name, text in columns.items()]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
