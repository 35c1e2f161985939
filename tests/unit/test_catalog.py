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

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# The reference itself, where the repository is checked out beside the project's shared/ folder.
SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "000_fa2b110717556058.txt"

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


def _reference_types() -> set[str]:
    lines = (FIXTURES / "reference-1.0-types.txt").read_text(encoding="utf-8").splitlines()
    names = {line for line in lines if line and not line.startswith("#")}
    if SPEC.exists():
        # The fixture must still match the reference's section 7 table (one type a row).
        table = SPEC.read_text(encoding="utf-8").split("## 7.")[1].split("## 8.")[0]
        in_spec = {row.split("`")[1] for row in table.splitlines() if row.startswith("| `")}
        assert in_spec | {"record_end"} == names
    return names


def test_every_type_of_the_reference_table_is_in_the_catalog() -> None:
    names = _reference_types()
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
