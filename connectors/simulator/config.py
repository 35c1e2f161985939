"""Settings of one simulated PBX: dialect, seed, size, traffic mix and build options."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from connectors.simulator.timefmt import parse_start

DIALECTS = ("v1.0", "current")
DEFAULT_START = "2026-11-02T08:00:00Z"

# Scenario -> relative weight of a new arrival. Scenarios a build cannot produce
# (parallel originate in ``current``, dial-in rooms in ``v1.0``) are skipped for it.
DEFAULT_MIX: dict[str, float] = {
    "inbound_queue": 46.0,
    "inbound_direct": 16.0,
    "outbound": 16.0,
    "click_to_call": 6.0,
    "parallel_originate": 4.0,
    "conference": 5.0,
    "dial_in_conference": 3.0,
    "internal": 4.0,
}


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything that shapes one PBX's traffic; two equal configs give equal output."""

    dialect: str = "current"
    seed: int = 1
    calls: int | None = 100
    start_us: int = field(default_factory=lambda: parse_start(DEFAULT_START))
    cps: float = 0.12
    agents: int | None = None
    supervisors: int = 3
    cc_addon: bool = True
    pbx_index: int = 0
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    v1_event_shape: str = "flat"
    showcase: bool = True

    def __post_init__(self) -> None:
        if self.dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS}, not {self.dialect!r}")
        if self.calls is not None and self.calls < 0:
            raise ValueError("calls must be >= 0")
        if self.cps <= 0:
            raise ValueError("cps must be > 0")
        if self.v1_event_shape not in ("flat", "nested"):
            raise ValueError("v1_event_shape must be flat or nested")
        unknown = set(self.mix) - set(DEFAULT_MIX)
        if unknown:
            raise ValueError(f"unknown scenarios in mix: {sorted(unknown)}")

    @property
    def v1(self) -> bool:
        return self.dialect == "v1.0"

    @property
    def addon(self) -> bool:
        """The contact-centre addon is on (``current`` only; 1.0 had agents in core)."""
        return self.dialect == "current" and self.cc_addon

    @property
    def agent_events(self) -> bool:
        """Whether this build reports agent state at all."""
        return self.v1 or self.addon

    def for_pbx(self, index: int) -> SimConfig:
        """The config of the index-th of several PBXs: its own seed stream and id range."""
        return replace(self, pbx_index=index, seed=self.seed * 1_000_003 + index)


def parse_mix(text: str) -> dict[str, float]:
    """``inbound_queue=50,outbound=20`` over the defaults; unknown names raise ValueError."""
    mix = dict(DEFAULT_MIX)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in DEFAULT_MIX:
            raise ValueError(f"bad mix entry {part!r}; names: {', '.join(DEFAULT_MIX)}")
        weight = float(value)
        if weight < 0:
            raise ValueError(f"negative weight in {part!r}")
        mix[name.strip()] = weight
    return mix
