"""The generation context of one PBX: random streams, ids, legs and fact emission."""

from __future__ import annotations

import math
import random
from statistics import NormalDist
from typing import Any

from connectors.simulator.config import SimConfig
from connectors.simulator.records import Fact, Leg
from connectors.simulator.timefmt import PAD9, US, rfc3339_autosi
from connectors.simulator.topology import Topology

SIP_DOMAIN = "pbx.local"
NO_DATA: dict[str, Any] = {}  # shared by facts without fields; never written to
# Quantiles of exp(N(0, 0.6)): a log-normal draw is one uniform draw and a table lookup.
_LOGN_SIZE = 4096
_LOGN = [math.exp(0.6 * NormalDist().inv_cdf((i + 0.5) / _LOGN_SIZE)) for i in range(_LOGN_SIZE)]


class Gen:
    """Shared by every scenario of one PBX; facts of the scenario being built go to ``out``."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.v1 = cfg.v1
        self.addon = cfg.addon
        self.agent_events = cfg.agent_events
        self.rng = random.Random(cfg.seed)
        self.random = self.rng.random
        self.topo = Topology(cfg, self.rng)
        self.legs: list[Leg] = []
        self.out: list[Fact] = []
        self.seq = 0
        self.force: frozenset[str] | None = None
        self.counter = 0
        self.ws_session = self.uuid()

    # -- randomness -------------------------------------------------------------------
    def chance(self, p: float, flag: str) -> bool:
        """A random branch; in a showcase scenario exactly the forced flags are taken."""
        r = self.random()
        if self.force is not None:
            return flag in self.force
        return r < p

    def pick(self, weights: dict[str, float], group: str) -> str:
        """A weighted choice; in a showcase scenario the forced one, else the first key."""
        if self.force is not None:
            for key, w in weights.items():
                if w > 0 and f"{group}={key}" in self.force:
                    return key
            return next(iter(weights))
        total = sum(weights.values())
        r = self.random() * total
        for key, w in weights.items():
            r -= w
            if r < 0:
                return key
        return next(reversed(weights))

    def dur(self, median_s: float, lo_s: float, hi_s: float) -> int:
        """A log-normal duration (sigma 0.6) in microseconds, clipped to [lo, hi] seconds."""
        r = self.random() * _LOGN_SIZE
        i = int(r)
        value = median_s * _LOGN[i]
        value = hi_s if value > hi_s else lo_s if value < lo_s else value
        return int(value * US) + int((r - i) * 1000)

    def uni(self, lo_s: float, hi_s: float) -> int:
        """A uniform duration in microseconds."""
        return int((lo_s + (hi_s - lo_s) * self.random()) * US)

    def below(self, n: int) -> int:
        """A uniform integer in [0, n)."""
        return int(self.random() * n)

    # -- ids ----------------------------------------------------------------------------
    def uuid(self) -> str:
        h = hex(self.rng.getrandbits(128))[2:].zfill(32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:]}"

    def hex(self, digits: int) -> str:
        return hex(self.rng.getrandbits(4 * digits))[2:].zfill(digits)

    def sip_call_id(self, ip: str) -> str:
        return f"{self.hex(16)}@{ip}"

    def phone(self) -> str:
        return f"1{'3589'[self.below(4)]}{str(PAD9 + self.below(PAD9))[1:]}"

    # -- facts --------------------------------------------------------------------------
    def emit(self, t: int, kind: str, leg: Leg | None, data: dict[str, Any] | None = None) -> None:
        self.seq = seq = self.seq + 1
        self.out.append((t, seq, kind, leg, NO_DATA if data is None else data))

    # -- legs ---------------------------------------------------------------------------
    def new_leg(
        self, t: int, *, direction: str, caller: str, callee: str, uas: bool,
        call_id: str | None = None, trunk: str | None = None, session_of: Leg | None = None,
        context: str = "default", remote_ip: str = "10.20.0.9",
    ) -> Leg:
        """A new leg; ``session_of`` makes it part of that leg's logical call."""
        if call_id is None:
            call_id = self.sip_call_id(remote_ip) if uas else self.uuid()
        leg = Leg(len(self.legs), call_id, direction, caller, callee)
        self.legs.append(leg)
        leg.created = t
        leg.uas = uas
        leg.trunk = trunk
        leg.context = context
        leg.caller_name = _user(caller)
        leg.callee_name = _user(callee)
        leg.uuid = self.uuid()
        if session_of is not None:
            leg.session_id = session_of.session_id
            leg.root_call_id = session_of.root_call_id
        if uas:
            leg.sip_headers = {
                "Contact": f"<{caller}:5060>",
                "X-Tenant": "corp_a",
            }
        self.set_context(leg)
        return leg

    def set_context(self, leg: Leg) -> None:
        """The enrichment context this dialect attaches to the leg's call-scoped events."""
        if self.v1:
            v1: dict[str, Any] = {"caller": leg.caller, "callee": leg.callee}
            if leg.caller_name:
                v1["caller_name"] = leg.caller_name
            if leg.callee_name:
                v1["callee_name"] = leg.callee_name
            v1["direction"] = leg.direction
            if leg.trunk:
                v1["trunk"] = leg.trunk
            leg.ctx_v1 = v1
            return
        cur: dict[str, Any] = {
            "session_id": leg.session_id, "caller": leg.caller, "callee": leg.callee,
            "direction": leg.direction,
        }
        if leg.uas:
            cur["caller_name"] = leg.caller_name
            cur["callee_name"] = leg.callee_name
            cur["root"] = {
                "call_id": leg.call_id, "caller": leg.caller, "caller_name": leg.caller_name,
                "callee": leg.callee, "callee_name": leg.callee_name,
                "start_time": rfc3339_autosi(leg.created, 1 + leg.idx % 997),
            }
        if leg.trunk:
            cur["trunk"] = leg.trunk
        leg.ctx_current = cur

    def v1_context(self, t: int, leg: Leg, **updates: str | None) -> None:
        """1.0's context grows during the call (app, routing target, agent)."""
        if self.v1:
            self.emit(t, "_ctx_v1", leg, updates)


def _user(uri: str) -> str | None:
    """The user part of a SIP URI: ``sip:1001@host`` -> ``1001``."""
    if not uri.startswith("sip:"):
        return None
    return uri[4:].split("@", 1)[0] or None


def sip_uri(user: str, host: str = SIP_DOMAIN) -> str:
    return f"sip:{user}@{host}"
