"""The simulation loop: facts from the model, rendered and encoded, counted per type.

Work is done a batch of facts at a time (everything up to the next call arrival), which
keeps the per-event cost to a render, an encode and a list append.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from connectors.simulator.config import SimConfig
from connectors.simulator.model import Model
from connectors.simulator.records import Fact, Leg
from connectors.simulator.render_current import Emission
from connectors.simulator.wire import make_wire

# (body, emission, pbx index, injected duplicate?, the fact's leg)
Delivery = tuple[str, Emission, int, bool, Leg | None]


@dataclass(slots=True)
class Counts:
    """What was sent: distinct events and deliveries (by-design repeats included) per type."""

    events: Counter[str]
    deliveries: Counter[str]
    duplicates_injected: int = 0
    bodies: int = 0


class Simulation:
    """One PBX: a deterministic stream of webhook bodies plus the model behind them."""

    def __init__(self, cfg: SimConfig, *, duplicates: float = 0.0,
                 frame_shape: str = "wrapped") -> None:
        self.cfg = cfg
        self.model = Model(cfg)
        self.wire = make_wire(cfg.dialect, event_shape=cfg.v1_event_shape,
                              frame_shape=frame_shape)
        self.duplicates = duplicates
        self._dup_rng = random.Random(cfg.seed ^ 0x5EED_D0B1)
        self.counts = Counts(Counter(), Counter())
        self.cutoff: int | None = None  # last instant sent, when stopped early
        self.complete = False
        self._stop = False

    def stop(self) -> None:
        """End the stream at the next batch boundary (everything up to an instant is sent)."""
        self._stop = True

    def _rendered(self, *, track: bool) -> Iterator[tuple[list[Fact], list[Emission], list[int]]]:
        """Per batch: the facts, their emissions and (with ``track``) each emission's fact."""
        render = self.wire.renderer.render
        events = self.counts.events
        for facts in self.model.batches():
            ems: list[Emission] = []
            owner: list[int] = []
            firsts: list[str] = []
            extend, first = ems.extend, firsts.append
            if track:
                for i, fact in enumerate(facts):
                    out = render(fact)
                    if out:
                        first(out[0][1])
                        extend(out)
                        owner.extend([i] * len(out))
            else:
                for fact in facts:
                    out = render(fact)
                    if out:
                        first(out[0][1])
                        extend(out)
            events.update(firsts)
            self.counts.deliveries.update([em[1] for em in ems])
            yield facts, ems, owner
            if self._stop:
                self.cutoff = self.model.last_t
                return
        self.complete = True

    def body_batches(self) -> Iterator[list[str]]:
        """Webhook bodies, a batch at a time, in send order (the fast path)."""
        render_bodies = self.wire.render_bodies
        fanout = self.wire.renderer.fanout
        events, deliveries = self.counts.events, self.counts.deliveries
        for facts in self.model.batches():
            kinds: list[str] = []
            bodies = render_bodies(facts, kinds)
            deliveries.update(kinds)
            # An event is counted once however many deliveries it fans out to.
            events.update(kinds)
            if fanout:
                events.subtract(fanout)
                fanout.clear()
            if self.duplicates:
                bodies = self._with_duplicates(bodies)
            self.counts.bodies += len(bodies)
            yield bodies
            if self._stop:
                self.cutoff = self.model.last_t
                return
        self.complete = True

    def _with_duplicates(self, bodies: list[str]) -> list[str]:
        out: list[str] = []
        rnd, p = self._dup_rng.random, self.duplicates
        for body in bodies:
            out.append(body)
            if rnd() < p:
                out.append(body)
                self.counts.duplicates_injected += 1
        return out

    def deliveries(self) -> Iterator[Delivery]:
        """One delivery at a time, with its emission and leg (for the network sinks)."""
        body_of = self.wire.body
        rnd, p = self._dup_rng.random, self.duplicates
        idx = self.cfg.pbx_index
        for facts, ems, owner in self._rendered(track=True):
            for em, i in zip(ems, owner, strict=True):
                leg = facts[i][3]
                body = body_of(em)
                self.counts.bodies += 1
                yield body, em, idx, False, leg
                if p and rnd() < p:
                    self.counts.duplicates_injected += 1
                    self.counts.bodies += 1
                    yield body, em, idx, True, leg


class MultiSimulation:
    """Several independent PBXs, their deliveries merged by instant (then PBX index)."""

    def __init__(self, sims: list[Simulation]) -> None:
        self.sims = sims

    def stop(self) -> None:
        for sim in self.sims:
            sim.stop()

    def body_batches(self) -> Iterator[list[str]]:
        if len(self.sims) == 1:
            yield from self.sims[0].body_batches()
            return
        batch: list[str] = []
        for body, *_ in self.deliveries():
            batch.append(body)
            if len(batch) >= 4096:
                yield batch
                batch = []
        if batch:
            yield batch

    def deliveries(self) -> Iterator[Delivery]:
        if len(self.sims) == 1:
            yield from self.sims[0].deliveries()
            return
        streams = [((d[1][0], d[2], n, d) for n, d in enumerate(s.deliveries()))
                   for s in self.sims]
        for _, _, _, delivery in heapq.merge(*streams):
            yield delivery
