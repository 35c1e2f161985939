"""The command line: only the command being run is imported, and the help still lists all."""

from __future__ import annotations

import subprocess
import sys

import pytest

from connectors.cli.commands import COMMANDS
from connectors.cli.main import _command, main

HEAVY = ("duckdb", "pyarrow", "aiokafka", "dagster", "fastavro", "aiohttp")


def test_the_command_word_is_found_past_global_options() -> None:
    assert _command(["simulate", "--calls", "3"]) == "simulate"
    assert _command(["-v", "--config", "x.toml", "verify", "--truth", "t"]) == "verify"
    assert _command(["--config=x.toml", "-vv", "report"]) == "report"
    assert _command(["--help"]) is None and _command([]) is None


def test_help_and_errors_name_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err


def test_simulate_does_not_load_the_pipeline_libraries(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A simulator run (or any light command) starts without importing the storage and
    broker libraries, which cost seconds of start-up."""
    code = ("import sys; from connectors.cli.main import main; "
            f"rc = main(['simulate', '--calls', '3', '--out', {str(tmp_path / 'a')!r}, "
            "'--no-progress']); "
            f"print(rc, [m for m in {HEAVY!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stdout + done.stderr
