"""The figures each benchmark hands to ``bench/run_all.py``: one row per measure, with the
baseline measured in the same run, the ratio to it, and the goal of DESIGN §7."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path


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
