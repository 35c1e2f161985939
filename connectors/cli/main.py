"""Entry point of ``rwi-etl``: global options, subcommand dispatch, exit codes.

Exit codes: 0 success, 1 failure, 2 usage or configuration error, 3 broker problem,
4 another run holds the lake or the database, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pipelines.errors import RwiEtlError
from pipelines.settings import Settings, load_settings

from . import commands

Handler = Callable[[argparse.Namespace, Settings], int]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, of that command only (when it is one)."""
    parser = argparse.ArgumentParser(
        prog="rwi-etl",
        description=(
            "Turn RustPBX RWI events (webhook and WebSocket) into Kafka topics, "
            "a Parquet lake and DuckDB analytics."
        ),
        epilog=(
            "Environment: KAFKA_BOOTSTRAP_SERVERS (use an existing cluster), "
            "RWI_TOPIC_PREFIX (default rwi), RWI_DATA_DIR (default ./data). "
            "Environment variables win over the config file."
        ),
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="TOML configuration file (env vars win)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in commands.registrars(command):
        register(sub)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not a global option)."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Only the command being run is imported and built (the full parser for --help,
    # errors and unknown commands).
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose == 0:
        # aiokafka logs routine retries (e.g. leader election just after topic creation)
        # as warnings; they are noise to an operator unless asked for.
        logging.getLogger("aiokafka").setLevel(logging.ERROR)
    handler: Handler = args.handler
    try:
        settings = load_settings(getattr(args, "config", None))
        return handler(args, settings)
    except RwiEtlError as exc:
        print(f"rwi-etl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rwi-etl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
