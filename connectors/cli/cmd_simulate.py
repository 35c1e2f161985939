"""``rwi-etl simulate``: a RustPBX stand-in that speaks both RWI dialects, with ground truth."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from connectors.simulator.config import DEFAULT_START, DIALECTS, SimConfig, parse_mix
from connectors.simulator.report import coverage_table
from connectors.simulator.runner import RunOptions, RunResult, run
from connectors.simulator.timefmt import parse_start
from connectors.simulator.wire import V1_FRAMES
from pipelines.errors import ConfigError
from pipelines.settings import Settings

_DESCRIPTION = """\
Simulate a RustPBX contact centre and emit its RWI events, byte for byte as the server
does, in one of two dialects:
  v1.0     the RWI 1.0 reference: webhook envelope with `sequence` and an epoch-seconds
           `timestamp`, 1.0 event names (call_incoming, dn_state_changed, parallel
           originate...), WebSocket frames wrapped as {"call_ringing": {...}};
  current  today's server: flat events with `event_type`, RFC 3339 timestamps, call
           context with session_id/root, duplicates by design (call_bridged, supervisor
           events), no call_answered while an IVR/queue app runs, the contact-centre
           addon's events (unless --no-cc-addon), the console `test` webhook.
Traffic comes from a seeded model (IVR menus, queues, agents, transfers, conferences,
supervisors, recordings, originates...) on a simulated clock that starts at --start.
The same --seed gives byte-identical --out and --truth files.

Delivery (combine freely): --out FILE writes every webhook body, one per line, in send
order ("-" for stdout); --webhook URL POSTs them like RustPBX (one request in flight,
keep-alive, no retries); --ws HOST:PORT serves /rwi/v1 (Bearer or ?token= auth, rwi-v1
subprotocol, session.subscribe / session.resume / session.list_calls).

--truth FILE writes the ground truth as JSON lines (kind = summary, session, call,
ivr_path, ivr_node_visit, queue_call, recording, agent_state): what the analytics tables
must hold, at the precision each dialect allows (connectors/simulator/README.md).

Exit codes: 0 done (every webhook POST answered 2xx), 1 some POSTs failed, were dropped,
or --check-coverage found a missing event type, 2 usage error."""

_EPILOG = """\
examples:
  rwi-etl simulate --dialect v1.0 --calls 1000 --seed 7 --out events.jsonl --truth truth.jsonl
  rwi-etl simulate --calls 500 --webhook http://127.0.0.1:8088/rwi-events \
      --header "Authorization:Bearer s3cret"
  rwi-etl simulate --duration 60 --rate 200 --ws 127.0.0.1:8089 --ws-token s3cret --truth t.jsonl"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate`` command."""
    p = sub.add_parser("simulate", help="simulate a RustPBX and emit RWI events (+ ground truth)",
                       description=_DESCRIPTION, epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("traffic")
    g.add_argument("--dialect", choices=DIALECTS, default="current",
                   help="wire dialect to speak (default current)")
    g.add_argument("--calls", type=int, default=None, metavar="N",
                   help="number of call arrivals per PBX (default 100; unlimited with --duration)")
    g.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default 1)")
    g.add_argument("--start", default=DEFAULT_START, metavar="RFC3339",
                   help=f"simulated clock start (default {DEFAULT_START})")
    g.add_argument("--cps", type=float, default=0.12, metavar="RATE",
                   help="call arrivals per simulated second (default 0.12)")
    g.add_argument("--agents", type=int, default=None, metavar="N",
                   help="number of agents (default: sized to the arrival rate)")
    g.add_argument("--mix", default="", metavar="NAME=W,...",
                   help="scenario weights, e.g. inbound_queue=50,outbound=20 (names: "
                        "inbound_queue, inbound_direct, outbound, click_to_call, "
                        "parallel_originate, conference, dial_in_conference, internal)")
    g.add_argument("--no-cc-addon", action="store_true",
                   help="current: a build without the contact-centre addon")
    g.add_argument("--no-showcase", action="store_true",
                   help="draw every call from the mix (by default the first calls walk "
                        "the rarer branches so every event type appears early)")
    g.add_argument("--v1-event", choices=("flat", "nested"), default="flat",
                   help="v1.0 webhook `event`: flat (the reference's text) or nested under "
                        "its type (the reference's Python example); default flat")
    g.add_argument("--duplicates", type=float, default=0.0, metavar="P",
                   help="probability of re-sending an identical body (tests; default 0)")
    o = p.add_argument_group("delivery")
    o.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="write every webhook body, one JSON document per line ('-' = stdout)")
    o.add_argument("--truth", type=Path, default=None, metavar="FILE",
                   help="write the ground truth (JSON lines)")
    o.add_argument("--webhook", default=None, metavar="URL", help="POST each body to URL")
    o.add_argument("--header", action="append", default=[], metavar="K:V",
                   help="extra webhook request header (repeatable)")
    o.add_argument("--timeout-ms", type=int, default=5000, metavar="MS",
                   help="total timeout of one POST (default 5000)")
    o.add_argument("--lag-drop", action="store_true",
                   help="model the 512-slot channel: when the endpoint lags, skip the "
                        "oldest events instead of waiting (use with --rate)")
    o.add_argument("--senders", type=int, default=1, metavar="K",
                   help="K independent PBXs posting in parallel (default 1)")
    o.add_argument("--ws", default=None, metavar="HOST:PORT",
                   help="serve /rwi/v1 on HOST:PORT (loopback; port 0 = any free port)")
    o.add_argument("--ws-token", default=None, metavar="TOKEN",
                   help="accepted token (default: RWI_WS_TOKEN, else rwi-sim-token)")
    o.add_argument("--ws-frame", choices=V1_FRAMES, default="wrapped",
                   help="v1.0 WebSocket frame shape (default wrapped, as 1.0-era servers sent)")
    o.add_argument("--ws-wait", type=float, default=10.0, metavar="SECONDS",
                   help="wait this long for a first subscriber before generating (default 10)")
    o.add_argument("--ws-linger", type=float, default=1.0, metavar="SECONDS",
                   help="keep serving this long after the last event (default 1)")
    o.add_argument("--rate", type=float, default=None, metavar="EVENTS/S",
                   help="pace deliveries to this many bodies per second (default: as fast "
                        "as the sinks take them)")
    o.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop after this many seconds of wall time; calls still up are "
                        "reported as in progress")
    r = p.add_argument_group("report")
    r.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    r.add_argument("--check-coverage", action="store_true",
                   help="exit 1 unless every event type of the dialect was emitted")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=handle)


def _options(args: argparse.Namespace, settings: Settings) -> tuple[SimConfig, RunOptions]:
    headers = {}
    for item in args.header:
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            raise ConfigError(f"--header wants K:V, got {item!r}")
        headers[key.strip()] = value.strip()
    ws = None
    if args.ws:
        host, sep, port = args.ws.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"--ws wants HOST:PORT, got {args.ws!r}")
        ws = (host or "127.0.0.1", int(port))
    if args.senders < 1 or (args.senders > 1 and ws is not None):
        raise ConfigError("--senders must be >= 1, and 1 with --ws")
    if not 0.0 <= args.duplicates <= 1.0:
        raise ConfigError("--duplicates is a probability in [0, 1]")
    calls = args.calls if args.calls is not None else (None if args.duration else 100)
    try:
        cfg = SimConfig(dialect=args.dialect, seed=args.seed, calls=calls,
                        start_us=parse_start(args.start), cps=args.cps, agents=args.agents,
                        cc_addon=not args.no_cc_addon, mix=parse_mix(args.mix),
                        v1_event_shape=args.v1_event, showcase=not args.no_showcase)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    opts = RunOptions(
        out=args.out, truth=args.truth, webhook=args.webhook, headers=headers,
        timeout_ms=args.timeout_ms, lag_drop=args.lag_drop, senders=args.senders, ws=ws,
        ws_token=args.ws_token or settings.websocket.token or "rwi-sim-token",
        ws_frame=args.ws_frame, ws_wait_s=args.ws_wait, ws_linger_s=args.ws_linger,
        rate=args.rate, duration=args.duration, duplicates=args.duplicates,
        progress=False if args.no_progress else None,
        on_listen=lambda url: print(f"rwi-etl simulate: serving {url}", file=sys.stderr,
                                    flush=True))
    return cfg, opts


def handle(args: argparse.Namespace, settings: Settings) -> int:
    cfg, opts = _options(args, settings)
    result = run(cfg, opts)
    summary = result.summary
    failed = result.delivery_failures > 0
    uncovered = args.check_coverage and bool(summary["types_missing"])
    # With --out - the bodies own stdout; the report goes to stderr then.
    stream = sys.stderr if args.out is not None and str(args.out) == "-" else sys.stdout
    if args.json:
        report = {k: v for k, v in summary.items() if k != "kind"}
        report["elapsed_s"] = round(result.elapsed_s, 3)
        report["bodies_per_s"] = round(summary["bodies_written"] / max(result.elapsed_s, 1e-9))
        if result.webhook:
            report["webhook"] = _webhook(result)
        if result.ws_port is not None:
            report["ws"] = {"port": result.ws_port, "frames_sent": result.ws_frames}
        print(json.dumps(report), file=stream)
    else:
        _print_human(summary, result, stream)
    return 1 if failed or uncovered else 0


def _webhook(result: RunResult) -> dict[str, int]:
    stats = result.webhook
    return {"ok_2xx": sum(s.ok for s in stats), "non_2xx": sum(s.non_2xx for s in stats),
            "errors": sum(s.errors for s in stats), "dropped": sum(s.dropped for s in stats),
            "max_in_flight_per_sender": max(s.max_in_flight for s in stats)}


def _print_human(summary: dict[str, object], result: RunResult, out: TextIO) -> None:
    print(coverage_table(summary), file=out)
    print(f"dialect {summary['dialect']}, seed {summary['seed']}, {summary['pbx_count']} PBX: "
          f"{summary['arrivals']} arrivals, {summary['calls_started']} call legs "
          f"({summary['calls_ended']} ended, {summary['calls_in_progress']} still up), "
          f"{summary['sessions']} sessions", file=out)
    rate = int(summary["bodies_written"]) / max(result.elapsed_s, 1e-9)  # type: ignore[call-overload]
    print(f"{summary['events_total']} events, {summary['deliveries_total']} deliveries, "
          f"{summary['bodies_written']} bodies in {result.elapsed_s:.2f}s ({rate:,.0f}/s)",
          file=out)
    if result.webhook:
        w = _webhook(result)
        print(f"webhook: {w['ok_2xx']} 2xx, {w['non_2xx']} non-2xx, {w['errors']} errors, "
              f"{w['dropped']} dropped by lag", file=out)
    if result.ws_port is not None:
        print(f"websocket: port {result.ws_port}, {result.ws_frames} frames sent", file=out)
