from pathlib import Path

import pytest

from pipelines import avro
from pipelines.catalog import (
    ALIASES,
    CATALOG,
    CATEGORIES,
    CATEGORY_SCHEMA,
    Dialect,
    all_topics,
    lookup,
    topic_for,
    types_in,
)
from pipelines.fieldtypes import context_kinds, payload_kinds

SPEC_DIR = Path(__file__).resolve().parents[3] / "shared" / "spec"

NEW_IN_CURRENT = {
    "call_created",
    "conference_joined",
    "conference_left",
    "transcript_started",
    "transcript_segment",
    "transcript_error",
    "transcript_ended",
}
ADDON = {
    "agent_state_changed",
    "agent_registered",
    "agent_unregistered",
    "cc_answered",
    "cc_ringing",
    "cc_hangup",
    "cc_held",
    "cc_unheld",
    "skill_group_candidates_found",
    "skill_group_agent_assigned",
    "skill_group_no_agent",
    "skill_group_call_queued",
    "skill_group_call_abandoned",
    "skill_group_service_unavailable",
}


def test_v1_0_reference_has_87_types() -> None:
    assert len(types_in(Dialect.V1_0)) == 87


def test_every_type_of_the_reference_table_is_in_the_catalog() -> None:
    # The 1.0 reference's section 7 quick table lists one type per row as | `name` | ...
    text = (SPEC_DIR / "000_fa2b110717556058.txt").read_text(encoding="utf-8")
    table = text.split("## 7.")[1].split("## 8.")[0]
    names = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    names.add("record_end")  # section 6.4, missing from the quick table
    assert len(names) == 87
    assert names == set(types_in(Dialect.V1_0))


def test_new_and_addon_types() -> None:
    current_only = {s.event_type for s in CATALOG.values() if s.in_current and not s.in_v1_0}
    assert current_only - {"test"} == NEW_IN_CURRENT
    assert {s.event_type for s in CATALOG.values() if s.cc_addon} >= ADDON
    assert set(types_in(Dialect.CURRENT)) >= NEW_IN_CURRENT | ADDON


def test_every_category_has_a_schema_and_a_topic() -> None:
    assert set(CATEGORY_SCHEMA) == set(CATEGORIES)
    for category in CATEGORIES:
        schema = avro.load(CATEGORY_SCHEMA[category])
        assert schema.field_names()[:2] == ["meta", "context"]
        assert schema.field_names()[-1] == "extra"
        assert topic_for(category) == f"rwi.{category}.v1"
    assert all_topics("acme")[-1] == "acme.deadletter.v1"
    assert len(all_topics()) == len(CATEGORIES) + 1


@pytest.mark.parametrize("spec", list(CATALOG.values()), ids=lambda s: s.event_type)
def test_key_field_is_a_declared_field(spec) -> None:  # type: ignore[no-untyped-def]
    declared = set(payload_kinds(spec.category)) | set(context_kinds()) | {"call_id", "source"}
    assert spec.key_field in declared | {"session_id"}


def test_unknown_types_are_kept_in_the_unknown_bucket() -> None:
    assert lookup("never_heard_of_it").category == "unknown"
    assert ALIASES["call_incoming"] == "call_created"
    assert lookup("call_incoming").category == lookup("call_created").category == "call"
