"""The list of subcommands; each module registers its own parser and handler."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from . import (
    cmd_catalog,
    cmd_compact,
    cmd_demo,
    cmd_ingest,
    cmd_kafka,
    cmd_report,
    cmd_run,
    cmd_simulate,
    cmd_verify,
)

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

REGISTRARS: list[Registrar] = [
    cmd_demo.register,
    cmd_kafka.register,
    cmd_catalog.register,
    cmd_simulate.register,
    cmd_ingest.register,
    cmd_compact.register,
    cmd_run.register,
    cmd_verify.register,
    cmd_report.register,
]
