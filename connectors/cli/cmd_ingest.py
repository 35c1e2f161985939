"""``rwi-etl ingest``: run the webhook receiver and/or the WebSocket listener into Kafka."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from connectors.ingest.logs import configure_logging
from connectors.ingest.service import Channels, IngestService, parse_listen
from pipelines.settings import Settings

_DESCRIPTION = """\
Receive RustPBX RWI events and publish them to Kafka (one topic per category, Avro values,
key = call id). Both feeds can run at once and share one converter, so an event that arrives
on both gets one event_id.

  webhook    POST <path> (default /rwi-events). Answered 200 only after Kafka acknowledged
             every event of the body (acks=all); 400 malformed (stored in the dead-letter
             topic); 401 bad token; 413 too large; 503 + Retry-After when Kafka is
             unreachable or the in-flight cap is full. Also GET /healthz and /metrics.
  websocket  a passive listener on the PBX's /rwi/v1: subscribes, resumes on every connect,
             reconnects with backoff. It never attaches to or detaches from calls.

Without --webhook or --ws the config decides: the webhook on [webhook] listen, plus the
WebSocket when [websocket] url is set. With either flag, only the channels given run.
Settings: [webhook] token/header/path/max_body_bytes, [websocket] token/contexts/events,
[ingest] ack_timeout_s, max_in_flight_bytes, compression, tls_cert_file/tls_key_file...
Env: KAFKA_BOOTSTRAP_SERVERS, RWI_TOPIC_PREFIX, RWI_PBX, RWI_WEBHOOK_TOKEN, RWI_WS_TOKEN.
SIGTERM or SIGINT stops it after the events already accepted are delivered."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``ingest`` command."""
    parser = sub.add_parser(
        "ingest", help="receive webhook / WebSocket events from RustPBX into Kafka",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--webhook", metavar="HOST:PORT",
                        help="listen for webhook POSTs here (e.g. 0.0.0.0:8088)")
    parser.add_argument("--ws", metavar="URL",
                        help="connect to a PBX's RWI WebSocket (e.g. ws://pbx:8080/rwi/v1)")
    parser.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                        metavar="FILE", help="TOML configuration file (env vars win)")
    parser.add_argument("--log-json", action="store_true",
                        help="log one JSON object per line (tokens are always masked)")
    parser.set_defaults(handler=_ingest)


def channels_from(args: argparse.Namespace, settings: Settings) -> Channels:
    """The channels to run: the flags when given, else what the config enables."""
    if args.webhook is None and args.ws is None:
        return Channels(parse_listen(settings.webhook.listen), settings.websocket.url)
    return Channels(parse_listen(args.webhook) if args.webhook else None, args.ws)


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging([t for t in (settings.webhook.token, settings.websocket.token) if t],
                      json_lines=args.log_json)
    if logging.getLogger().level > logging.INFO:
        logging.getLogger("connectors.ingest").setLevel(logging.INFO)
    service = IngestService(settings, channels_from(args, settings))
    _runner()(service.run_until_signalled())
    print("rwi-etl ingest: stopped", file=sys.stderr)
    return 0


def _runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run

    def run(coro: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)

    return run
