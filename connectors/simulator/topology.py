"""The simulated contact centre's fixed layout: agents, queues, IVR trees, trunks, numbers."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from connectors.simulator.config import SimConfig
from connectors.simulator.records import Agent

FIRST_NAMES = (
    "Alice", "Bruno", "Chen", "Dara", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas",
    "Kemal", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara",
    "Uma", "Vikram", "Wen", "Xavi", "Yara", "Zoltan",
)
TEAMS = ("sales", "support", "billing")
TRUNKS = ("carrier-a", "carrier-b")


@dataclass(frozen=True, slots=True)
class Queue:
    """A queue: its agents, patience limits and what happens when nobody answers."""

    queue_id: str
    max_wait_us: int
    alert_after_us: int
    fallback: str  # hangup | voicemail
    overflow_to: str | None = None
    overflow_after_us: int = 0
    agents: list[Agent] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Node:
    """An IVR node; ``options`` maps a key (digit, ``auto`` or ``timeout``) to an action."""

    node_id: str
    name: str
    node_type: str
    options: dict[str, tuple[str, str | None]]
    weights: dict[str, float]


@dataclass(frozen=True, slots=True)
class IvrApp:
    app_id: str
    root: str
    nodes: dict[str, Node]


Action = tuple[str, str | None]


def _node(node_id: str, name: str, node_type: str,
          choices: dict[str, tuple[str, str | None, float]]) -> Node:
    options = {key: (action, target) for key, (action, target, _) in choices.items()}
    weights = {key: weight for key, (_, _, weight) in choices.items()}
    return Node(node_id, name, node_type, options, weights)


# Keys: a DTMF digit, "auto" (the node moves on by itself) or "timeout" (no input).
IVR_APPS: dict[str, IvrApp] = {
    "ivr_main": IvrApp("ivr_main", "welcome", {
        "welcome": _node("welcome", "Welcome", "prompt", {"auto": ("menu", "main_menu", 1.0)}),
        "main_menu": _node("main_menu", "Main menu", "menu", {
            "1": ("queue", "sales", 30), "2": ("menu", "support_menu", 30),
            "3": ("queue", "billing", 16), "0": ("queue", "operator", 6),
            "9": ("voicemail", None, 3), "8": ("queue", "vip_night", 1.5),
            "7": ("invalid", None, 3), "timeout": ("timeout", None, 3),
            "#": ("hangup", None, 2)}),
        "support_menu": _node("support_menu", "Support", "menu", {
            "1": ("queue", "support", 60), "2": ("jump_ivr", "ivr_tech", 22),
            "*": ("menu", "main_menu", 8), "timeout": ("timeout", None, 4)}),
    }),
    "ivr_tech": IvrApp("ivr_tech", "tech_menu", {
        "tech_menu": _node("tech_menu", "Technical support", "menu", {
            "1": ("queue", "tech", 60), "2": ("menu", "tech_faq", 25),
            "9": ("voicemail", None, 5), "timeout": ("timeout", None, 4)}),
        "tech_faq": _node("tech_faq", "Frequently asked questions", "menu", {
            "1": ("queue", "tech", 55), "#": ("hangup", None, 45)}),
    }),
}

STEP_APP_ID = "bot_step"
DIDS = {"4000": "ivr_main", "4001": "ivr_tech", "4002": STEP_APP_ID}


class Topology:
    """The centre one PBX serves; agent ids are unique across the PBXs of one run."""

    def __init__(self, cfg: SimConfig, rng: random.Random) -> None:
        base = 1001 + 1000 * cfg.pbx_index
        self.pbx_ip = f"10.{cfg.pbx_index // 250}.{cfg.pbx_index % 250}.5"
        count = cfg.agents if cfg.agents is not None else _agents_for(cfg.cps)
        self.agents: list[Agent] = []
        for i in range(count):
            name = f"{FIRST_NAMES[i % len(FIRST_NAMES)]}{'' if i < 26 else i // 26}"
            ext = str(8001 + 1000 * cfg.pbx_index + i)
            self.agents.append(Agent(str(base + i), name, ext, TEAMS[i % len(TEAMS)]))
        self.supervisors = [str(9001 + 1000 * cfg.pbx_index + i) for i in range(cfg.supervisors)]
        self.users = [str(2001 + 1000 * cfg.pbx_index + i) for i in range(20)]
        s = 1_000_000
        self.queues: dict[str, Queue] = {
            "sales": Queue("sales", 240 * s, 90 * s, "voicemail"),
            "support": Queue("support", 300 * s, 120 * s, "hangup"),
            "billing": Queue("billing", 180 * s, 90 * s, "voicemail"),
            "tech": Queue("tech", 300 * s, 120 * s, "hangup", "support", 75 * s),
            "operator": Queue("operator", 120 * s, 60 * s, "hangup"),
            "vip_night": Queue("vip_night", 60 * s, 60 * s, "voicemail"),
        }
        staffed = ["sales", "support", "billing", "tech", "operator"]
        for i, agent in enumerate(self.agents):
            home = staffed[i % len(staffed)]
            extra = staffed[(i * 3 + 1) % len(staffed)]
            for qid in dict.fromkeys((home, extra, rng.choice(staffed))):
                self.queues[qid].agents.append(agent)
                agent.queues.append(qid)


def _agents_for(cps: float) -> int:
    """Enough agents that most queued calls are served: offered load plus a margin."""
    erlangs = cps * 0.5 * 260.0
    return max(6, min(400, math.ceil(erlangs * 1.25) + 3))
