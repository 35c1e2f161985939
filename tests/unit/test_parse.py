import contextlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.errors import ParseError
from pipelines.ingest import BodyConverter
from pipelines.parse import parse_body

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def parse(doc: object, source: str = "webhook"):  # type: ignore[no-untyped-def]
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return parse_body(raw, source=source, received_at=NOW)


def test_current_webhook_envelope() -> None:
    [e] = parse(
        {
            "rwi": "1.0",
            "timestamp": "2026-08-22T15:33:10.123456789+00:00",
            "call_id": "c1",
            "event_type": "call_ringing",
            "event": {"event_type": "call_ringing", "call_id": "c1"},
        }
    )
    assert (e.event_type, e.dialect, e.envelope_call_id) == ("call_ringing", "current", "c1")
    assert e.event_time == datetime(2026, 8, 22, 15, 33, 10, 123456, tzinfo=UTC)
    assert e.instant == "2026-08-22T15:33:10.123456789Z"
    assert e.payload == {"call_id": "c1"}


def test_v1_0_webhook_with_sequence_epoch_and_nested_event() -> None:
    [e] = parse(
        {
            "rwi": "1.0",
            "sequence": 42,
            "timestamp": 1716212345,
            "call_id": "call-abc",
            "event_type": "recording_metadata_available",
            "event": {
                "recording_metadata_available": {
                    "call_id": "call-abc",
                    "metadata": {"filename": "a"},
                }
            },
        }
    )
    assert (e.dialect, e.sequence) == ("v1.0", 42)
    assert e.event_time == datetime.fromtimestamp(1716212345, UTC)
    assert e.payload["metadata"] == {"filename": "a"}


def test_frames_flat_and_wrapped() -> None:
    [flat] = parse({"event_type": "call_answered", "call_id": "x"}, "ws")
    assert (flat.event_type, flat.dialect, flat.event_time) == ("call_answered", "current", None)
    [wrapped] = parse({"rwi": "1.0", "call_ringing": {"call_id": "x"}}, "ws")
    [bare] = parse({"call_ringing": {"call_id": "x"}}, "ws")
    assert wrapped.event_type == bare.event_type == "call_ringing"
    assert wrapped.dialect == "v1.0" and wrapped.payload == {"call_id": "x"}


def test_typeless_v1_frame_is_kept_as_unknown() -> None:
    [e] = parse({"call_id": "c", "caller_name": "330909", "direction": "inbound"}, "ws")
    assert e.event_type == "unknown" and e.warnings


def test_console_test_event() -> None:
    [e] = parse(
        {
            "rwi": "1.0",
            "timestamp": "2026-08-22T15:33:10Z",
            "call_id": "test-call-id",
            "event_type": "test",
            "event": {"test": {"message": "RustPBX RWI webhook test"}},
        }
    )
    assert (e.event_type, e.dialect, e.payload) == (
        "test",
        "current",
        {"message": "RustPBX RWI webhook test"},
    )


def test_resume_reply_with_payload_nested_events() -> None:
    events = parse(
        {
            "type": "command_completed",
            "action_id": "r1",
            "action": "session.resume",
            "status": "success",
            "data": {
                "replayed_count": 2,
                "events": [
                    {
                        "timestamp": "2026-08-22T15:33:10.123456789+00:00",
                        "call_id": "c1",
                        "event": {
                            "event_type": "call_ringing",
                            "call_id": "c1",
                            "payload": {"event_type": "call_ringing", "call_id": "c1"},
                        },
                    },
                    {
                        "timestamp": "2026-08-22T15:33:11+00:00",
                        "call_id": "c2",
                        "event": {
                            "event_type": "call_bridged",
                            "call_id": None,
                            "payload": {"event_type": "call_bridged", "leg_a": "c2", "leg_b": "c3"},
                        },
                    },
                ],
            },
        },
        "ws",
    )
    assert [(e.event_type, e.source, e.envelope_call_id) for e in events] == [
        ("call_ringing", "ws_resume", "c1"),
        ("call_bridged", "ws_resume", "c2"),
    ]
    assert events[1].payload == {"leg_a": "c2", "leg_b": "c3"}


def test_command_acks_are_not_events() -> None:
    assert parse({"type": "command_completed", "action_id": "s", "status": "success"}, "ws") == []


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "empty_body"),
        (b"\xff\xfe", "invalid_utf8"),
        (b"{", "invalid_json"),
        (b"42", "not_an_object"),
        (b'{"foo": 1}', "no_event_type"),
        (b'{"event_type": "DROP TABLE x;"}', "bad_event_type"),
        (b'{"event_type": 7}', "bad_event_type"),
    ],
)
def test_garbage_raises_parse_error_with_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_body(raw, source="webhook", received_at=NOW)
    assert info.value.reason == reason


def test_deeply_nested_json_is_a_parse_error_not_a_crash() -> None:
    with pytest.raises(ParseError):
        parse_body(b"[" * 100_000 + b"]" * 100_000, source="webhook", received_at=NOW)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
envelopes = st.fixed_dictionaries(
    {
        "event_type": st.sampled_from(
            ["call_hangup", "dtmf", "ivr_step_trace", "nope", "call_bridged"]
        ),
        "event": st.dictionaries(
            st.sampled_from(
                [
                    "call_id",
                    "reason",
                    "sip_status",
                    "root",
                    "extra",
                    "metadata",
                    "trigger",
                    "digit",
                    "session_id",
                    "caller",
                    "leg_a",
                    "event_type",
                    "ani",
                ]
            ),
            json_values,
            max_size=8,
        ),
    },
    optional={
        "timestamp": json_values,
        "sequence": json_values,
        "call_id": json_values,
        "rwi": json_values,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, envelopes))
def test_arbitrary_json_never_raises_anything_but_parse_error(doc: object) -> None:
    raw = json.dumps(doc).encode()
    with contextlib.suppress(ParseError):
        parse_body(raw, source="webhook", received_at=NOW)
    result = BodyConverter("fuzz").convert(raw, source="webhook", received_at=NOW)
    assert len(result.messages) == max(1, len(result.events))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_land_or_dead_letter(raw: bytes) -> None:
    result = BodyConverter("fuzz").convert(raw, source="ws", received_at=NOW)
    landed = bool(result.events) and not result.dead_letters
    dead_lettered = len(result.dead_letters) == 1 and not result.events
    assert landed or dead_lettered
    assert len(result.messages) == len(result.events) + len(result.dead_letters)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"123456789012345678901234", 123456789012345678901234),  # beyond 64 bits
        (b"-9223372036854775809", -9223372036854775809),
        (b"18446744073709551616", 18446744073709551616),
        (b"1234567890123456789", 1234567890123456789),  # 19 digits, fits: either path
    ],
)
def test_integers_beyond_64_bits_are_read_exactly(text: bytes, value: int) -> None:
    [e] = parse(b'{"event_type": "call_hangup", "call_id": "c", "n": ' + text + b"}")
    assert e.payload["n"] == value and isinstance(e.payload["n"], int)


def test_every_catalog_name_is_a_valid_type_name() -> None:
    # parse._type_name accepts catalog names without matching the pattern again.
    from pipelines.catalog import CATALOG
    from pipelines.parse import _TYPE_NAME

    assert all(_TYPE_NAME.match(name) for name in CATALOG)


def test_unhashable_event_type_is_a_parse_error() -> None:
    with pytest.raises(ParseError) as info:
        parse({"event_type": ["call_ringing"], "call_id": "c"})
    assert info.value.reason == "bad_event_type"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-08-22T15:33:10.123456789+00:00",
         (datetime(2026, 8, 22, 15, 33, 10, 123456, tzinfo=UTC), "2026-08-22T15:33:10.123456789Z")),
        ("2026-08-22 15:33:10z",
         (datetime(2026, 8, 22, 15, 33, 10, tzinfo=UTC), "2026-08-22T15:33:10.000000000Z")),
        ("2026-08-22T15:33:10.5-0000",
         (datetime(2026, 8, 22, 15, 33, 10, 500000, tzinfo=UTC), "2026-08-22T15:33:10.500000000Z")),
        ("2026-08-22T15:33:10.123+05:30",
         (datetime(2026, 8, 22, 10, 3, 10, 123000, tzinfo=UTC), "2026-08-22T10:03:10.123000000Z")),
        ("2200-01-01T00:00:00.5Z",  # bounds apply to the whole second
         (datetime(2200, 1, 1, 0, 0, 0, 500000, tzinfo=UTC), "2200-01-01T00:00:00.500000000Z")),
        ("2200-01-01T00:00:01Z", None),
        ("1989-12-31T23:59:59.999Z", None),
        ("2026-02-30T00:00:00Z", None),
        ("2026-08-22T15:33:10.1234567890Z", None),
    ],
)
def test_rfc3339_timestamps(text: str, expected: object) -> None:
    from pipelines.timeparse import parse_rfc3339

    assert parse_rfc3339(text) == expected
