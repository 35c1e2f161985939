"""``rwi-etl kafka up|down|status|fetch``: the project's own local Kafka broker."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Iterator

from tqdm import tqdm

from pipelines.kafka_local import BrokerStatus, LocalKafka, OnDownload
from pipelines.settings import Settings

_DESCRIPTION = """\
Manage the project's local Apache Kafka broker: one KRaft node (broker and controller)
on 127.0.0.1, run with the machine's Java 17+. The jars are fetched once from Maven
Central with `mvn` into the cache dir (RWI_CACHE_DIR, default ~/.cache/rwi-etl); data,
server.properties, kafka.log and kafka.pid live in <RWI_DATA_DIR>/kafka.
Ports: RWI_KAFKA_PORT (default 19092), RWI_KAFKA_CONTROLLER_PORT (default 19093).
With KAFKA_BOOTSTRAP_SERVERS set, nothing is started or stopped and `status` checks
that cluster instead."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``kafka`` command and its subcommands."""
    parser = sub.add_parser(
        "kafka", help="start, stop or check the local Kafka broker",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="kafka_action", metavar="ACTION", required=True)

    up = actions.add_parser(
        "up", help="start the broker (fetching it first if needed); wait until it answers",
        description="Start the local broker in the background and wait until it answers "
                    "metadata requests. Does nothing if it already runs. Exit 0 when ready, "
                    "3 when it cannot be set up or started.")
    up.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                    help="how long to wait for the broker to answer (default 60)")
    up.set_defaults(handler=_up)

    down = actions.add_parser(
        "down", help="stop the broker started by `kafka up`",
        description="Stop the local broker recorded in <data dir>/kafka/kafka.pid "
                    "(SIGTERM, then SIGKILL after the timeout). Does nothing if it is not "
                    "running.")
    down.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                      help="how long to wait for a clean shutdown (default 30)")
    down.set_defaults(handler=_down)

    status = actions.add_parser(
        "status", help="print the bootstrap address and Kafka version; exit 0 only if ready",
        description="Check the broker: print its bootstrap address, Kafka version, pid and "
                    "state. Exit 0 only when it answers; 1 otherwise.")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="how long to wait for an answer (default 5)")
    status.set_defaults(handler=_status)

    fetch = actions.add_parser(
        "fetch", help="download Kafka and its dependencies from Maven Central (once)",
        description="Assemble org.apache.kafka:kafka_2.13 and its runtime dependencies into "
                    "the cache dir with `mvn`. Skipped when they are already there.")
    fetch.set_defaults(handler=_fetch)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    kafka = LocalKafka(settings)
    with _download_progress(kafka) as on_download:
        if on_download is not None:
            kafka.fetch(on_download)
    status = kafka.up(timeout_s=args.timeout)
    _print_status(status)
    return 0 if status.ready else 1


def _down(args: argparse.Namespace, settings: Settings) -> int:
    print(LocalKafka(settings).down(timeout_s=args.timeout))
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    status = LocalKafka(settings).status(timeout_s=args.timeout)
    if args.json:
        print(json.dumps(dataclasses.asdict(status), sort_keys=True))
    else:
        _print_status(status)
    return 0 if status.ready else 1


def _fetch(args: argparse.Namespace, settings: Settings) -> int:
    kafka = LocalKafka(settings)
    with _download_progress(kafka) as on_download:
        lib = kafka.fetch(on_download)
    print(f"Kafka {settings.kafka.version}: {len(list(lib.glob('*.jar')))} jars in {lib}")
    return 0


def _print_status(status: BrokerStatus) -> None:
    state = "ready" if status.ready else "NOT ready"
    print(f"Kafka {status.version or '(version unknown)'} at {status.bootstrap}: {state}")
    print(f"  pid {status.pid}; {status.detail}" if status.pid else f"  {status.detail}")


@contextlib.contextmanager
def _download_progress(kafka: LocalKafka) -> Iterator[OnDownload | None]:
    """Announce a first-run fetch and count the downloaded artifacts on stderr."""
    if kafka.external or kafka.is_fetched():
        yield None
        return
    print(f"fetching Kafka {kafka.kafka.version} from Maven Central (first run only)…",
          file=sys.stderr, flush=True)
    started = time.monotonic()
    with tqdm(desc="downloaded", unit=" files", file=sys.stderr,
              disable=not sys.stderr.isatty()) as bar:
        yield lambda _name: bar.update(1)
    print(f"fetched in {time.monotonic() - started:.0f}s", file=sys.stderr)
