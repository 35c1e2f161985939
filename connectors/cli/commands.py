"""The list of subcommands; each module registers its own parser and handler.

The modules are imported only when their command is built: several pull in heavy
libraries (pyarrow, duckdb, aiokafka, aiohttp), which would slow down every other command.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

# command name -> module (in this package) that registers it, in --help order
COMMANDS: dict[str, str] = {
    "demo": "cmd_demo",
    "kafka": "cmd_kafka",
    "catalog": "cmd_catalog",
    "simulate": "cmd_simulate",
    "ingest": "cmd_ingest",
    "compact": "cmd_compact",
    "run": "cmd_run",
    "verify": "cmd_verify",
    "report": "cmd_report",
}


def registrars(only: str | None = None) -> list[Registrar]:
    """The registrar of command ``only`` if it is one, else those of every command."""
    names = [only] if only in COMMANDS else list(COMMANDS)
    return [importlib.import_module(f"{__package__}.{COMMANDS[name]}").register
            for name in names]
