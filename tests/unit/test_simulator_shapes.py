"""Wire shapes per dialect, and today's quirks, checked on the emitted bodies."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from pipelines.errors import ParseError
from pipelines.parse import parse_body
from tests.unit.test_simulator_support import micros, simulate

RFC3339_NS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}\+00:00$")


def _docs(dialect: str, **kw: object) -> list[dict]:
    bodies, _ = simulate(dialect, 400, 7, **kw)  # type: ignore[arg-type]
    return [json.loads(b) for b in bodies]


def test_v1_envelope_has_sequence_epoch_seconds_and_flat_events() -> None:
    docs = _docs("v1.0")
    assert [list(d) for d in docs[:1]] == [["rwi", "sequence", "timestamp", "call_id",
                                            "event_type", "event"]]
    assert [d["sequence"] for d in docs] == list(range(1, len(docs) + 1))
    assert all(isinstance(d["timestamp"], int) and d["rwi"] == "1.0" for d in docs)
    stamps = [d["timestamp"] for d in docs]
    assert stamps == sorted(stamps)
    for d in docs:
        if d["event_type"] != "ivr_step_trace":  # its own `event_type` field is the trigger
            assert "event_type" not in d["event"]
    assert all(d["call_id"] == "" for d in docs if d["event_type"] in (
        "dn_registered", "conference_created", "queue_alert"))
    incoming = next(d["event"] for d in docs if d["event_type"] == "call_incoming")
    assert incoming["dial_direction"] == "inbound" and incoming["called_phone"] is None
    assert "session_id" not in incoming and "root" not in incoming
    hangup = next(d["event"] for d in docs if d["event_type"] == "call_hangup")
    assert "sip_status" in hangup and "hangup_by" not in hangup


def test_v1_nested_event_variant() -> None:
    from connectors.simulator.config import SimConfig
    from connectors.simulator.engine import Simulation

    sim = Simulation(SimConfig(dialect="v1.0", seed=2, calls=5, v1_event_shape="nested"))
    docs = [json.loads(b) for batch in sim.body_batches() for b in batch]
    assert all(list(d["event"]) == [d["event_type"]] for d in docs)


def test_current_envelope_and_flat_event_with_event_type() -> None:
    docs = _docs("current")
    assert docs[0]["event_type"] == "test"
    assert docs[0]["event"] == {"test": {"message": "RustPBX RWI webhook test"}}
    assert docs[0]["call_id"] == "test-call-id"
    for d in docs:
        assert list(d) == ["call_id", "event", "event_type", "rwi", "timestamp"]
        assert "sequence" not in d and RFC3339_NS.match(d["timestamp"])
        if d["event_type"] != "test":
            assert d["event"]["event_type"] == d["event_type"]
            assert list(d["event"]) == sorted(d["event"])
    stamps = [d["timestamp"] for d in docs]
    assert len(set(stamps)) == len(stamps)
    assert [micros(s) for s in stamps] == sorted(micros(s) for s in stamps)


def test_current_context_enrichment_null_blocks_fill() -> None:
    docs = _docs("current")
    created = [d["event"] for d in docs if d["event_type"] == "call_created"]
    inbound = next(e for e in created if e["direction"] == "inbound")
    assert inbound["caller_name"] is None and inbound["trunk"] is None
    assert inbound["session_id"] and inbound["root"]["call_id"] == inbound["call_id"]
    later = next(d["event"] for d in docs if d["event_type"] == "call_hangup"
                 and d["event"]["call_id"] == inbound["call_id"])
    assert later["caller_name"] and later["trunk"] and later["root"] == inbound["root"]
    outbound = next(e for e in created if e["direction"] == "outbound")
    assert "root" not in outbound and "caller_name" in outbound


def test_current_duplicates_by_design() -> None:
    docs = _docs("current")
    bridged = [d for d in docs if d["event_type"] == "call_bridged"]
    assert bridged and len(bridged) % 2 == 0
    for a, b in zip(bridged[::2], bridged[1::2], strict=True):
        assert a["event"] == b["event"] and a["timestamp"] != b["timestamp"]
        assert [a["call_id"], b["call_id"]] == [a["event"]["leg_a"], a["event"]["leg_b"]]
        assert "session_id" not in a["event"]
    groups: dict[str, list[dict]] = defaultdict(list)
    for d in docs:
        if d["event_type"].startswith("supervisor_"):
            groups[json.dumps([d["event_type"], d["event"]], sort_keys=True)].append(d)
    sizes = {len(g) for g in groups.values()}
    assert sizes <= {2, 3} and 3 in sizes and 2 in sizes
    for group in groups.values():
        assert len({d["call_id"] for d in group}) == len(group)
        assert group[0]["call_id"] == group[0]["event"]["supervisor_call_id"]


def test_current_no_call_answered_while_an_app_runs_and_auto_recording() -> None:
    docs = _docs("current")
    queued = {d["event"]["call_id"] for d in docs if d["event_type"] == "queue_joined"}
    answered = {d["event"]["call_id"] for d in docs if d["event_type"] == "call_answered"}
    assert queued and not queued & answered
    started = {d["event"]["call_id"] for d in docs if d["event_type"] == "record_started"}
    stopped = {d["event"]["call_id"] for d in docs if d["event_type"] == "record_stopped"}
    assert stopped - started and queued & (stopped - started)
    stopped_ev = next(d["event"] for d in docs if d["event_type"] == "record_stopped")
    assert stopped_ev["call_type"] is None and stopped_ev["unique_id"] == stopped_ev["call_id"]


def test_late_recording_events_come_after_hangup() -> None:
    for dialect in ("current", "v1.0"):
        docs = _docs(dialect)
        hangup: dict[str, int] = {}
        late = 0
        for d in docs:
            ev, kind = d["event"], d["event_type"]
            if kind == "call_hangup":
                hangup[ev["call_id"]] = micros(d["timestamp"])
            elif kind in ("recording_metadata_available", "record_end"):
                assert micros(d["timestamp"]) >= hangup[ev["call_id"]]
                late += micros(d["timestamp"]) - hangup[ev["call_id"]] >= 1_000_000
        assert late


def test_current_metadata_omits_absent_optionals_and_record_end_is_call_length() -> None:
    docs = _docs("current")
    meta = [d["event"]["metadata"] for d in docs
            if d["event_type"] == "recording_metadata_available"]
    assert meta and all(None not in m.values() for m in meta)
    assert any("caller_name" not in m for m in meta)  # originate recordings
    created = {d["event"]["call_id"]: micros(d["timestamp"]) for d in docs
               if d["event_type"] == "call_created"}
    ended = {d["event"]["call_id"]: micros(d["timestamp"]) for d in docs
             if d["event_type"] == "call_hangup"}
    for d in docs:
        if d["event_type"] == "record_end":
            cid = d["event"]["call_id"]
            assert d["event"]["duration_secs"] == (ended[cid] - created[cid]) // 1_000_000


@pytest.mark.parametrize("dialect", ["v1.0", "current"])
def test_every_body_parses_with_the_project_parser(dialect: str) -> None:
    bodies, _ = simulate(dialect, 1000, 7)
    now = datetime.now(UTC)
    errors = []
    kinds = set()
    for body in bodies:
        try:
            for event in parse_body(body.encode(), source="webhook", received_at=now):
                assert event.dialect == dialect
                kinds.add(event.event_type)
        except ParseError as exc:
            errors.append(exc.reason)
    assert errors == []
    assert "unknown" not in kinds


def test_plain_build_parses_too() -> None:
    bodies, _ = simulate("current", 400, 7, False)
    now = datetime.now(UTC)
    assert sum(len(parse_body(b, source="webhook", received_at=now)) for b in bodies) == \
        len(bodies)
