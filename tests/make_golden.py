"""Regenerate tests/fixtures/golden/*.bin after a deliberate encoding change."""

from pipelines.ingest import BodyConverter
from tests.unit.test_avro import GOLDEN, RECEIVED, golden_cases

if __name__ == "__main__":
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name, body in golden_cases().items():
        value = BodyConverter("golden-pbx").convert(body, source="webhook", received_at=RECEIVED)
        (GOLDEN / f"{name}.bin").write_bytes(value.messages[0].value)
        print(name, len(value.messages[0].value))
