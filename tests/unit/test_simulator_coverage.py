"""Every event type of each dialect is emitted; same seed, same bytes."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pytest

from connectors.cli.main import main
from connectors.simulator.report import NO_PRODUCER, expected_types
from pipelines.catalog import CATALOG
from tests.unit.test_simulator_support import by_type, simulate


def test_v1_reference_types_all_emitted_by_1000_calls_seed_7() -> None:
    bodies, lines = simulate("v1.0", 1000, 7)
    expected = expected_types("v1.0")
    assert len(expected) == 87
    assert set(by_type(bodies)) == expected
    summary = json.loads(lines[0])
    assert summary["types_missing"] == [] and summary["types_expected"] == 87


def test_current_emits_every_produced_type_with_the_addon() -> None:
    bodies, _ = simulate("current", 1000, 7)
    seen = set(by_type(bodies))
    expected = expected_types("current")
    assert seen == expected
    assert not seen & NO_PRODUCER
    assert {"call_created", "transcript_segment", "conference_joined", "test", "cc_answered",
            "skill_group_call_queued", "agent_state_changed"} <= seen
    assert not {"call_incoming", "dn_state_changed", "record_failed",
                "parallel_originate_started"} & seen


def test_current_without_addon_sends_no_addon_events() -> None:
    bodies, _ = simulate("current", 400, 7, False)
    seen = set(by_type(bodies))
    assert seen == expected_types("current", cc_addon=False)
    assert not {t for t in seen if CATALOG[t].cc_addon and not CATALOG[t].in_current}
    connected = [json.loads(b)["event"] for b in bodies
                 if json.loads(b)["event_type"] == "queue_agent_connected"]
    assert connected and all(e["agent_id"].startswith("sip:") for e in connected)


@pytest.mark.parametrize("dialect", ["v1.0", "current"])
def test_same_seed_gives_identical_files(tmp_path: Path, dialect: str) -> None:
    digests = []
    for run in ("a", "b"):
        out, truth = tmp_path / f"{run}.jsonl", tmp_path / f"{run}.truth.jsonl"
        code = main(["simulate", "--dialect", dialect, "--calls", "120", "--seed", "11",
                     "--out", str(out), "--truth", str(truth), "--json", "--no-progress"])
        assert code == 0
        digests.append((hashlib.sha256(out.read_bytes()).hexdigest(),
                        hashlib.sha256(truth.read_bytes()).hexdigest()))
    assert digests[0] == digests[1]
    other = tmp_path / "c.jsonl"
    main(["simulate", "--dialect", dialect, "--calls", "120", "--seed", "12", "--out",
          str(other), "--json", "--no-progress"])
    assert hashlib.sha256(other.read_bytes()).hexdigest() != digests[0][0]


def test_cli_json_summary_and_check_coverage(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--dialect", "current", "--calls", "60", "--seed", "3",
                 "--json", "--check-coverage", "--no-progress"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["types_missing"] == []
    assert report["calls_started"] == report["calls_ended"] + report["calls_in_progress"]
    code = main(["simulate", "--calls", "3", "--no-showcase", "--json", "--check-coverage",
                 "--no-progress"])
    assert code == 1
    capsys.readouterr()


def test_cli_help_names_the_design_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--dialect", "--calls", "--seed", "--out", "--truth", "--webhook", "--ws",
                 "--rate", "--duration", "--duplicates", "--senders", "--lag-drop",
                 "--timeout-ms", "--header", "--no-cc-addon", "--json"):
        assert flag in text


def test_duplicates_resend_identical_bodies(tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    truth = tmp_path / "t.jsonl"
    main(["simulate", "--calls", "40", "--seed", "5", "--duplicates", "0.2", "--out",
          str(out), "--truth", str(truth), "--json", "--no-progress"])
    lines = out.read_text().splitlines()
    summary = json.loads(truth.read_text().splitlines()[0])
    repeats = sum(1 for a, b in itertools.pairwise(lines) if a == b)
    assert summary["duplicates_injected"] == repeats > 0
    assert summary["bodies_written"] == len(lines) == summary["deliveries_total"] + repeats


@pytest.mark.parametrize("dialect", ["v1.0", "current"])
def test_golden_samples_are_reproduced_byte_for_byte(tmp_path: Path, dialect: str) -> None:
    """tests/fixtures/simulator/<dialect>-sample*.jsonl; after an intended change, regenerate:
    rwi-etl simulate --dialect D --calls 5 --seed 7 --no-showcase --out D-sample.jsonl
    --truth D-sample.truth.jsonl"""
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "simulator"
    out, truth = tmp_path / "out.jsonl", tmp_path / "truth.jsonl"
    main(["simulate", "--dialect", dialect, "--calls", "5", "--seed", "7", "--no-showcase",
          "--out", str(out), "--truth", str(truth), "--json", "--no-progress"])
    assert out.read_bytes() == (fixtures / f"{dialect}-sample.jsonl").read_bytes()
    assert truth.read_bytes() == (fixtures / f"{dialect}-sample.truth.jsonl").read_bytes()
