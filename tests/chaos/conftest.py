"""The fault suite's figures: one row per case, printed after the run and written to
``.cache/test-artifacts/chaos-report.json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chaos.harness import RESULTS

REPORT = Path(__file__).resolve().parents[2] / ".cache" / "test-artifacts" / "chaos-report.json"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault suite: reconciliation against the ground truth")
    write(f"{'case':<34} {'faults':<34} {'sent':>7} {'events':>7} {'kafka':>7} "
          f"{'lost':>5} {'doubled':>7} {'truth rows':>10} {'mismatch':>8} {'s':>6}")
    for r in RESULTS:
        write(f"{r.case:<34} {r.faults:<34} {r.sent:>7,} {r.events_expected:>7,} "
              f"{r.kafka_messages:>7,} {r.lost:>5} {r.doubled:>7} {r.truth_rows:>10,} "
              f"{r.truth_mismatches:>8} {r.seconds:>6.1f}")
    total = {
        "cases": len(RESULTS),
        "sent": sum(r.sent for r in RESULTS),
        "events": sum(r.events_expected for r in RESULTS),
        "lost": sum(r.lost for r in RESULTS),
        "doubled": sum(r.doubled for r in RESULTS),
        "truth_mismatches": sum(r.truth_mismatches for r in RESULTS),
    }
    write(f"total: {total['cases']} cases, {total['sent']:,} bodies/frames sent, "
          f"{total['events']:,} events, lost {total['lost']}, doubled {total['doubled']}, "
          f"truth mismatches {total['truth_mismatches']}")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps({"total": total, "cases": [r.as_row() for r in RESULTS]},
                                 indent=2, default=str))
    write(f"written to {REPORT}")
