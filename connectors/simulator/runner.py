"""Run a simulation to its sinks: a file, webhook POSTs, a WebSocket server; then the truth."""

from __future__ import annotations

import gc
import io
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from connectors.simulator.config import SimConfig
from connectors.simulator.engine import MultiSimulation, Simulation
from connectors.simulator.report import summary, write_truth

# The network sinks (aiohttp, websockets, asyncio) and the progress bar take a noticeable
# share of a short run's start-up: they are imported when a run needs them.
if TYPE_CHECKING:
    from tqdm import tqdm

    from connectors.simulator.webhook import WebhookStats

FLUSH_EVERY = 8192


@dataclass(slots=True)
class RunOptions:
    """Where the bodies go and how fast."""

    out: Path | None = None
    truth: Path | None = None
    webhook: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout_ms: int = 5000
    lag_drop: bool = False
    senders: int = 1
    ws: tuple[str, int] | None = None
    ws_token: str = "rwi-sim-token"
    ws_frame: str = "wrapped"
    ws_wait_s: float = 10.0
    ws_linger_s: float = 1.0
    rate: float | None = None
    duration: float | None = None
    duplicates: float = 0.0
    progress: bool | None = None
    on_listen: Callable[[str], None] | None = None


@dataclass(slots=True)
class RunResult:
    summary: dict[str, Any]
    elapsed_s: float
    webhook: list[WebhookStats] = field(default_factory=list)
    ws_port: int | None = None
    ws_frames: int = 0

    @property
    def delivery_failures(self) -> int:
        return sum(s.non_2xx + s.errors + s.dropped for s in self.webhook)


def build(cfg: SimConfig, opts: RunOptions) -> MultiSimulation:
    """One simulation per PBX (``--senders``), each with its own seed stream and ids."""
    sims = [Simulation(cfg.for_pbx(i) if opts.senders > 1 else cfg,
                       duplicates=opts.duplicates, frame_shape=opts.ws_frame)
            for i in range(opts.senders)]
    return MultiSimulation(sims)


def run(cfg: SimConfig, opts: RunOptions) -> RunResult:
    """Generate, deliver, write the truth; returns the summary and delivery statistics."""
    if opts.webhook or opts.ws or opts.rate or opts.duration:
        import asyncio

        return asyncio.run(run_async(cfg, opts))
    multi = build(cfg, opts)
    started = time.perf_counter()
    with _quiet_gc(), _output(opts.out) as out, _progress(cfg, opts) as bar:
        _deliver_sync(multi, out, bar)
    return _finish(multi, opts, RunResult({}, time.perf_counter() - started))


async def run_async(cfg: SimConfig, opts: RunOptions) -> RunResult:
    """:func:`run` inside a running event loop (network sinks, pacing)."""
    multi = build(cfg, opts)
    started = time.perf_counter()
    with _quiet_gc(), _output(opts.out) as out, _progress(cfg, opts) as bar:
        result = await _deliver_async(multi, opts, out, bar)
    result.elapsed_s = time.perf_counter() - started
    return _finish(multi, opts, result)


def _finish(multi: MultiSimulation, opts: RunOptions, result: RunResult) -> RunResult:
    if opts.truth is not None:
        write_truth(opts.truth, multi.sims)
    result.summary = summary(multi.sims)
    return result


def _deliver_sync(multi: MultiSimulation, out: IO[str] | None, bar: tqdm | None) -> None:
    pending: list[str] = []
    for bodies in multi.body_batches():
        pending.extend(bodies)
        if len(pending) >= FLUSH_EVERY:
            if out is not None:
                out.write("\n".join(pending))
                out.write("\n")
            pending.clear()
            _tick(multi, bar)
    if out is not None and pending:
        out.write("\n".join(pending))
        out.write("\n")
    _tick(multi, bar)


async def _deliver_async(multi: MultiSimulation, opts: RunOptions, out: IO[str] | None,
                         bar: tqdm | None) -> RunResult:
    import asyncio

    from connectors.simulator.webhook import WebhookSender
    from connectors.simulator.ws_server import RwiWsServer

    senders = [WebhookSender(opts.webhook, headers=opts.headers, timeout_ms=opts.timeout_ms,
                             lag_drop=opts.lag_drop) for _ in multi.sims] if opts.webhook else []
    for sender in senders:
        await sender.start()
    server = None
    if opts.ws is not None:
        server = RwiWsServer(multi.sims[0].wire, opts.ws_token, *opts.ws)
        port = await server.start()
        if opts.on_listen is not None:
            opts.on_listen(f"ws://{opts.ws[0]}:{port}/rwi/v1")
        if opts.ws_wait_s > 0:
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.subscribed.wait(), opts.ws_wait_s)
    wire = multi.sims[0].wire
    begin = time.monotonic()
    buffer: list[str] = []
    for n, (body, em, idx, dup, leg) in enumerate(multi.deliveries(), start=1):
        if out is not None:
            buffer.append(body)
            if len(buffer) >= FLUSH_EVERY:
                out.write("\n".join(buffer) + "\n")
                buffer.clear()
        if senders:
            await senders[idx].put(body)
        if server is not None and not dup:
            server.publish(em, leg, getattr(wire, "sequence", None))
        if opts.rate:
            ahead = begin + n / opts.rate - time.monotonic()
            if ahead > 0.002:
                await asyncio.sleep(ahead)
        elif n % 256 == 0:
            await asyncio.sleep(0)
        if n % 1024 == 0:
            _tick(multi, bar, begin, opts.duration)
        if opts.duration is not None and time.monotonic() - begin >= opts.duration:
            multi.stop()
    if out is not None and buffer:
        out.write("\n".join(buffer) + "\n")
    _tick(multi, bar, begin, opts.duration)
    stats = [await sender.close() for sender in senders]
    result = RunResult({}, 0.0, stats)
    if server is not None:
        await asyncio.sleep(opts.ws_linger_s)
        result.ws_port, result.ws_frames = server.port, server.frames_sent
        await server.close()
    return result


def _tick(multi: MultiSimulation, bar: tqdm | None, begin: float = 0.0,
          duration: float | None = None) -> None:
    if bar is None:
        return
    if duration is not None:
        bar.update(min(duration, time.monotonic() - begin) - bar.n)
    else:
        bar.update(sum(s.model.arrivals for s in multi.sims) - bar.n)


@contextmanager
def _progress(cfg: SimConfig, opts: RunOptions) -> Iterator[tqdm | None]:
    """A progress bar on stderr for long runs (auto: only on a terminal)."""
    if opts.progress is False:
        yield None
        return
    if opts.duration is not None:
        total: float | None = opts.duration
        unit = "s"
    else:
        total = (cfg.calls or 0) * opts.senders
        unit = "call"
        if total < 2000 and opts.progress is None and not opts.rate:
            yield None
            return
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, file=sys.stderr, disable=None if opts.progress is None
               else not opts.progress, desc="simulate", leave=False)
    try:
        yield bar
    finally:
        bar.close()


@contextmanager
def _output(path: Path | None) -> Iterator[IO[str] | None]:
    if path is None:
        yield None
    elif str(path) == "-":
        sys.stdout.flush()
        wrapper = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n")
        try:
            yield wrapper
        finally:
            wrapper.flush()
            wrapper.detach()  # leave sys.stdout open for the report
    else:
        with path.open("w", encoding="utf-8", newline="\n", buffering=1 << 20) as fh:
            yield fh


@contextmanager
def _quiet_gc() -> Iterator[None]:
    """Millions of short-lived objects: collect less often while generating."""
    before = gc.get_threshold()
    gc.set_threshold(200_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*before)
