"""The report over real analytics tables: figures match the tables, charts carry data,
and a headless browser renders it (a screenshot is kept for people to look at)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

from connectors.cli import cmd_simulate
from pipelines.analytics import build_analytics
from pipelines.report.build import gather, render, write_report
from pipelines.settings import load_settings
from tests.fixtures.analytics.rawlayer import RawLayer
from tests.fixtures.analytics.staging import read_bodies

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    bodies, truth = tmp / "bodies.jsonl", tmp / "truth.jsonl"
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cmd_simulate.register(sub)
    args = parser.parse_args(
        [
            "simulate",
            "--dialect",
            "current",
            "--calls",
            "300",
            "--seed",
            "5",
            "--out",
            str(bodies),
            "--truth",
            str(truth),
        ]
    )
    assert args.handler(args, load_settings(environ={})) == 0
    db = tmp / "rwi.duckdb"
    con = duckdb.connect(str(db))
    RawLayer(con).add(read_bodies(bodies))
    build_analytics(con)
    con.close()
    return db


def test_figures_match_the_tables(database: Path) -> None:
    con = duckdb.connect(str(database), read_only=True)
    try:
        data = gather(con)
        legs, answered = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE outcome = 'answered') FROM analytics.calls"
        ).fetchone()  # type: ignore[misc]
    finally:
        con.close()
    assert data.kpis["call legs"] == legs > 0
    assert dict(data.calls_by_outcome)["answered"] == answered
    assert sum(sum(v) for v in data.per_hour.values()) == legs
    assert data.funnel and data.drop_offs and data.wait_counts and data.recordings
    html = render(data)
    for title in (
        "Calls per hour by outcome",
        "Queue wait",
        "IVR funnel",
        "IVR drop-off",
        "Recordings",
        "Data quality",
    ):
        assert title in html
    assert len(re.findall(r"<rect ", html)) > 40  # bars with data, not empty frames


def test_browser_renders_the_report(database: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is required (apt-get install chromium); .ci/run installs it"
    report = tmp_path / "report.html"
    write_report(database, report)
    shot = tmp_path / "report.png"
    dom = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "Call legs per hour" in dom and dom.count("<svg") >= 6
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1100,2600",
            f"--screenshot={shot}",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000  # a page with charts, not a blank one
    keep = Path(__file__).resolve().parents[2] / ".cache" / "report-screenshot.png"
    keep.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, keep)
