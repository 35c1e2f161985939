"""Guards every schema change against the previous release's schemas."""

import copy
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import load_schema

from pipelines.avro import SCHEMA_DIR
from pipelines.catalog import CATEGORY_SCHEMA
from pipelines.compat import compare_dirs, compatibility_problems
from pipelines.ingest import BodyConverter
from pipelines.samples import all_examples

PREVIOUS = Path(__file__).resolve().parents[1] / "fixtures" / "schemas-release-0.1.0"


def test_current_schemas_are_compatible_with_the_previous_release() -> None:
    assert sorted(p.name for p in PREVIOUS.glob("*.avsc"))
    assert compare_dirs(PREVIOUS, SCHEMA_DIR) == []


def _call_schema() -> dict:
    return json.loads((SCHEMA_DIR / "rwi.etl.CallEvent.avsc").read_text())


def test_checker_catches_breaking_changes() -> None:
    old = _call_schema()
    removed = copy.deepcopy(old)
    removed["fields"] = [f for f in removed["fields"] if f["name"] != "reason"]
    assert compatibility_problems(old, removed) == ["rwi.etl.CallEvent.reason: removed"]
    retyped = copy.deepcopy(old)
    next(f for f in retyped["fields"] if f["name"] == "sip_status")["type"] = ["null", "string"]
    assert "type changed" in compatibility_problems(old, retyped)[0]
    no_default = copy.deepcopy(old)
    no_default["fields"].append({"name": "new_required", "type": "string"})
    assert compatibility_problems(old, no_default) == [
        "rwi.etl.CallEvent.new_required: added without a default"
    ]
    additive = copy.deepcopy(old)
    additive["fields"].append({"name": "new_opt", "type": ["null", "string"], "default": None})
    assert compatibility_problems(old, additive) == []


@pytest.mark.parametrize("category", sorted(CATEGORY_SCHEMA))
def test_data_resolves_in_both_directions(category: str) -> None:
    """Old data reads with the new schema, new data with the old one (fastavro resolution)."""
    name = CATEGORY_SCHEMA[category]
    old = load_schema(str(PREVIOUS / f"{name}.avsc"))
    new = load_schema(str(SCHEMA_DIR / f"{name}.avsc"))
    converter = BodyConverter("pbx")
    received = datetime(2026, 11, 2, tzinfo=UTC)
    records = [
        e.to_record()
        for _, _, body in all_examples()
        for e in converter.convert(body, source="webhook", received_at=received).events
        if e.category == category
    ] or [None]
    for record in records:
        if record is None:
            continue
        for writer, reader in ((old, new), (new, old)):
            buf = io.BytesIO()
            schemaless_writer(buf, parse_schema(writer), record)
            buf.seek(0)
            assert schemaless_reader(buf, writer, reader) is not None
