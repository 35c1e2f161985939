"""Coverage (which event types a build sends) and the run summary written with the truth."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.simulator.timefmt import truth_time
from connectors.simulator.truth import TruthBuilder, encode_rows
from pipelines.catalog import Dialect, types_in

if TYPE_CHECKING:
    from connectors.simulator.engine import Simulation

# Types today's code defines but nothing sends (rwi-wire-protocol.md §3.8-§3.9).
NO_PRODUCER = frozenset({"queue_position_changed", "queue_candidates_found",
                         "queue_agent_rejected", "conference_left"})
# Sent only when an agent registry resolves agent ids (the contact-centre addon).
NEEDS_REGISTRY = frozenset({"queue_agent_offered", "queue_agent_no_answer"})


def expected_types(dialect: str, *, cc_addon: bool = True) -> set[str]:
    """Every event type a server of this dialect and build sends."""
    if dialect == "v1.0":
        return set(types_in(Dialect.V1_0))
    found = set(types_in(Dialect.CURRENT, cc_addon=cc_addon)) - NO_PRODUCER
    return found if cc_addon else found - NEEDS_REGISTRY


def summary(sims: list[Simulation]) -> dict[str, Any]:
    """Counts over all simulated PBXs, from the model (calls) and the renderer (events)."""
    events: Counter[str] = Counter()
    deliveries: Counter[str] = Counter()
    started = ended = sessions = arrivals = bodies = dups = 0
    cfg = sims[0].cfg
    cutoffs = []
    for sim in sims:
        events.update(sim.counts.events)
        deliveries.update(sim.counts.deliveries)
        bodies += sim.counts.bodies
        dups += sim.counts.duplicates_injected
        arrivals += sim.model.arrivals
        tb = TruthBuilder(sim.cfg.dialect, sim.cutoff)
        legs = [leg for leg in sim.model.legs if tb.seen(leg.created)]
        started += len(legs)
        ended += sum(1 for leg in legs if tb.seen(leg.ended))
        sessions += len({tb.session_of(leg) for leg in legs})
        cutoffs.append(sim.cutoff)
    expected = expected_types(cfg.dialect, cc_addon=cfg.cc_addon)
    return {
        "kind": "summary", "dialect": cfg.dialect, "seed": cfg.seed, "pbx_count": len(sims),
        "cc_addon": cfg.addon, "start": truth_time(cfg.start_us), "arrivals": arrivals,
        "calls_started": started, "calls_ended": ended, "calls_in_progress": started - ended,
        "sessions": sessions, "complete": all(c is None for c in cutoffs),
        "cutoff_at": truth_time(max((c for c in cutoffs if c is not None), default=None)),
        "events_total": sum(events.values()), "deliveries_total": sum(deliveries.values()),
        "duplicates_injected": dups, "bodies_written": bodies,
        "types_emitted": len(events), "types_expected": len(expected),
        "types_missing": sorted(expected - set(events)),
        "events_by_type": dict(sorted(events.items())),
        "deliveries_by_type": dict(sorted(deliveries.items())),
    }


def truth_lines(sims: list[Simulation]) -> list[str]:
    """Every ground-truth row of the run, one JSON document per line, sorted."""
    rows: list[dict[str, Any]] = [summary(sims)]
    for sim in sims:
        tb = TruthBuilder(sim.cfg.dialect, sim.cutoff)
        legs = sim.model.legs
        rows.extend(tb.sessions(legs))
        rows.extend(tb.calls(legs))
        rows.extend(tb.ivr(legs))
        rows.extend(tb.queue_calls(legs))
        rows.extend(tb.recordings(legs))
        if sim.cfg.agent_events:
            rows.extend(tb.agent_states(sim.model.g.topo.agents))
    return encode_rows(rows)


def write_truth(path: Path, sims: list[Simulation]) -> int:
    """Write the truth file; returns the number of rows."""
    lines = truth_lines(sims)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write("\n".join(lines) + "\n")
    return len(lines)


def coverage_table(summary_row: dict[str, Any]) -> str:
    """Events per type, with by-design repeats, for the end-of-run report."""
    events, deliveries = summary_row["events_by_type"], summary_row["deliveries_by_type"]
    width = max((len(k) for k in events), default=10)
    lines = [f"{'event type':<{width}}  {'events':>8}  {'deliveries':>10}"]
    for name in sorted(events):
        lines.append(f"{name:<{width}}  {events[name]:>8}  {deliveries.get(name, 0):>10}")
    missing = summary_row["types_missing"]
    lines.append(f"{summary_row['types_emitted']} of {summary_row['types_expected']} expected "
                 f"types emitted" + (f"; missing: {', '.join(missing)}" if missing else ""))
    return "\n".join(lines)
