"""The contact centre over time: arrivals, scenario choice and the merged stream of facts.

Scenarios are generated whole, one arrival at a time in arrival order, and their facts are
merged by time. Agents are shared, so a later caller waits for an agent an earlier one
holds. The first arrivals walk a fixed showcase of rarer branches so that even a small run
exercises every event type; the rest are drawn from the configured mix.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator

from connectors.simulator import agents as ag
from connectors.simulator.builder import Gen
from connectors.simulator.config import SimConfig
from connectors.simulator.flows_conference import conference, dial_in_conference
from connectors.simulator.flows_inbound import direct, inbound_queue
from connectors.simulator.flows_outbound import click_to_call, outbound, parallel_originate
from connectors.simulator.records import Fact, Leg
from connectors.simulator.timefmt import US

Scenario = Callable[[Gen, int], None]

SCENARIOS: dict[str, Scenario] = {
    "inbound_queue": inbound_queue,
    "inbound_direct": direct,
    "internal": lambda g, t: direct(g, t, internal=True),
    "outbound": outbound,
    "click_to_call": click_to_call,
    "parallel_originate": parallel_originate,
    "conference": conference,
    "dial_in_conference": dial_in_conference,
}
ONLY_IN = {"parallel_originate": "v1.0", "dial_in_conference": "current"}

_Q = "inbound_queue"
SHOWCASE: tuple[tuple[str, frozenset[str]], ...] = tuple((s, frozenset(f)) for s, f in (
    (_Q, {"record", "hold", "second_hold", "transcript", "record_pause", "media_stream",
          "metadata_updated"}),
    (_Q, {"agent_response=no_answer"}),
    (_Q, {"main_menu=2", "support_menu=2", "tech_menu=1", "agent_response=no_answer"}),
    (_Q, {"impatient"}),
    (_Q, {"main_menu=8"}),
    (_Q, {"main_menu=3", "agent_response=reject"}),
    (_Q, {"did=4002"}), (_Q, {"did=4002", "step_path=error"}),
    (_Q, {"did=4002", "step_path=hangup"}),
    (_Q, {"ivr_abandon@main_menu"}), (_Q, {"main_menu=9"}), (_Q, {"main_menu=#"}),
    (_Q, {"main_menu=7"}), (_Q, {"main_menu=timeout"}),
    (_Q, {"supervisor", "sup_mode=whisper", "transfer", "transfer_kind=blind", "record"}),
    (_Q, {"supervisor", "sup_mode=barge", "transfer", "transfer_fail"}),
    (_Q, {"supervisor", "sup_mode=takeover", "record", "record_fail"}),
    (_Q, {"supervisor", "transfer", "transfer_kind=attended"}),
    (_Q, {"transfer", "transfer_kind=attended", "attended_cancel"}),
    (_Q, {"transfer", "transfer_kind=attended", "consult_no_answer"}),
    (_Q, {"transfer", "transfer_kind=blind", "target_no_answer"}),
    (_Q, {"after_wrapup=away", "transcript", "transcript_error"}),
    (_Q, {"after_wrapup=custom", "onhook", "agent_hangup"}),
    ("inbound_direct", {"direct_record", "hold"}), ("inbound_direct", {"direct=busy"}),
    ("inbound_direct", {"direct=no_answer"}), ("inbound_direct", {"direct=cancel"}),
    ("inbound_direct", {"direct=reject"}), ("inbound_direct", {"direct=fail"}),
    ("internal", set()),
    ("outbound", {"ownership", "originate_record", "play", "collect", "sip_message",
                  "sip_notify", "session_resumed", "record_pause"}),
    ("outbound", {"early_media", "originate_record", "collect", "collect_timeout",
                  "play", "play_interrupted"}),
    ("outbound", {"originate=busy"}), ("outbound", {"originate=no_answer"}),
    ("outbound", {"originate=fail"}), ("outbound", {"originate=early_hangup"}),
    ("outbound", {"originate=no_balance"}), ("outbound", {"originate=machine"}),
    ("inbound_direct", {"call_cut=rtpTimeout"}), ("inbound_direct", {"call_cut=autohangup"}),
    ("click_to_call", set()), ("click_to_call", {"bridge=busy"}),
    ("click_to_call", {"bridge=no_answer"}),
    ("parallel_originate", set()), ("parallel_originate", {"parallel_fail"}),
    ("conference", {"conf_mute", "conf_merge", "seat_replace"}),
    ("conference", {"conf_merge", "merge_fail", "seat_replace", "seat_replace_fail",
                    "seat_rollback_fail", "conf_end=auto"}),
    ("conference", {"conf_end=leave", "member_no_answer"}),
    ("dial_in_conference", set()),
))


class Model:
    """One PBX's traffic as a time-ordered stream of facts."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.g = Gen(cfg)
        self.arrivals = 0
        self.showcase = [s for s in SHOWCASE if ONLY_IN.get(s[0], cfg.dialect) == cfg.dialect] \
            if cfg.showcase else []
        mix = {k: w for k, w in cfg.mix.items()
               if w > 0 and ONLY_IN.get(k, cfg.dialect) == cfg.dialect}
        self.mix = mix or {"inbound_queue": 1.0}
        logins = len(self.g.topo.agents) * 137_000
        self.next_at = cfg.start_us + logins + 2 * US
        self.last_t = cfg.start_us

    def _next_arrival(self) -> int | None:
        if self.cfg.calls is not None and self.arrivals >= self.cfg.calls:
            return None
        return self.next_at

    def _generate(self) -> list[Fact]:
        g = self.g
        g.out = []
        t = self.next_at
        if self.arrivals < len(self.showcase):
            name, g.force = self.showcase[self.arrivals]
        else:
            name = g.pick(self.mix, "scenario")
        SCENARIOS[name](g, t)
        g.force = None
        self.arrivals += 1
        self.next_at = t + max(1, int(g.rng.expovariate(self.cfg.cps) * US))
        return g.out

    def batches(self, calls_per_batch: int = 24) -> Iterator[list[Fact]]:
        """Every fact in time order, in lists; endless when the config sets no call count.

        A fact can only be preceded by facts of scenarios already generated, because a
        scenario never starts before its arrival: so everything before the next arrival
        is final and can be released.
        """
        g = self.g
        g.out = []
        if not self.cfg.v1:
            g.emit(self.cfg.start_us, "test", None, {})
        ag.login_all(g, self.cfg.start_us + 1000)
        pending: list[Fact] = sorted(g.out)
        while True:
            upcoming = self._next_arrival()
            for _ in range(calls_per_batch):
                if upcoming is None:
                    break
                pending.extend(self._generate())
                upcoming = self._next_arrival()
            pending.sort()
            if upcoming is None:
                if pending:
                    self.last_t = pending[-1][0]
                    yield pending
                g.out = []
                ag.logout_all(g, self.last_t + 60 * US)
                if g.out:
                    yield sorted(g.out)
                return
            cut = bisect.bisect_left(pending, (upcoming,))
            if cut:
                ready, pending = pending[:cut], pending[cut:]
                self.last_t = ready[-1][0]
                yield ready

    def facts(self) -> Iterator[Fact]:
        """Every fact in time order, one at a time."""
        for batch in self.batches():
            yield from batch

    @property
    def legs(self) -> list[Leg]:
        return self.g.legs
