"""The figures each benchmark hands to ``bench/run_all.py``: one row per measure, with the
baseline measured in the same run, the ratio to it, and the goal of DESIGN §7."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    measure: str
    value: str  # as printed, with its unit
    baseline: str  # what it is compared with, as printed
    ratio: float | None  # value / baseline (time: baseline / value is not used)
    goal: str
    met: bool | None  # None: no goal


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summary", type=Path, default=None, metavar="FILE",
                        help="also write the figures as JSON to FILE (for bench/run_all.py)")


def write(path: Path | None, figures: list[Figure]) -> None:
    if path is not None:
        path.write_text(json.dumps([asdict(f) for f in figures], indent=2))


def read(path: Path) -> list[Figure]:
    return [Figure(**row) for row in json.loads(path.read_text())]


def run_phase(script: str, args: list[str], cwd: Path) -> dict[str, Any]:
    """Run one measured phase of a benchmark in a fresh process (``script --phase …``, which
    prints its measurements as one JSON line last), so phases do not share caches or heap."""
    out = subprocess.run([sys.executable, script, *args], cwd=cwd, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"phase {args} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))
