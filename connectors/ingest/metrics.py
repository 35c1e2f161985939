"""Counters, gauges and a latency histogram, rendered in the Prometheus text format (0.0.4)."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]

ACK_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Labels = ()) -> str:
    pairs = labels + extra
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


@dataclass(slots=True)
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.count += 1


@dataclass(frozen=True, slots=True)
class _Family:
    name: str
    kind: str
    help: str


class Metrics:
    """The ingest service's metrics; cheap to update from the event loop (no locks)."""

    def __init__(self, prefix: str = "rwi_ingest") -> None:
        self.prefix = prefix
        self._families: dict[str, _Family] = {}
        self._values: dict[str, dict[Labels, float]] = {}
        self._histograms: dict[str, dict[Labels, Histogram]] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        for name, help_text in (
            ("bodies_received_total", "Webhook bodies and WebSocket frames received."),
            ("events_received_total", "Events parsed out of received bodies and frames."),
            ("events_published_total", "Messages acknowledged by the broker (acks=all)."),
            ("dead_letters_total", "Bodies or frames that could not be parsed, dead-lettered."),
            ("rejected_total", "Webhook requests answered with an error status, by reason."),
            ("publish_failures_total", "Messages the broker did not acknowledge."),
            ("ws_reconnects_total", "WebSocket reconnection attempts."),
            ("ws_resumes_total", "session.resume replies received, with replayed events."),
        ):
            self._declare(name, "counter", help_text)
        self._declare("ack_latency_seconds", "histogram",
                      "From receipt of a body to the broker's acknowledgement of all its events.")

    def _declare(self, name: str, kind: str, help_text: str) -> None:
        full = f"{self.prefix}_{name}"
        self._families[name] = _Family(full, kind, help_text)
        if kind == "histogram":
            self._histograms[name] = {}
        elif kind == "counter":
            self._values[name] = {}

    def counter(self, name: str, help_text: str) -> None:
        """Declare another counter (labels are given when incrementing)."""
        self._declare(name, "counter", help_text)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A gauge whose value is read when the metrics are rendered."""
        self._families[name] = _Family(f"{self.prefix}_{name}", "gauge", help_text)
        self._gauges[name] = read

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        series = self._values[name]
        key = tuple(sorted(labels.items())) if len(labels) > 1 else tuple(labels.items())
        series[key] = series.get(key, 0.0) + amount

    def observe(self, name: str, value: float, **labels: str) -> None:
        series = self._histograms[name]
        key = tuple(sorted(labels.items()))
        hist = series.get(key)
        if hist is None:
            hist = series[key] = Histogram(ACK_BUCKETS_S)
        hist.observe(value)

    def value(self, name: str, **labels: str) -> float:
        """Current value of a counter series (0 when never incremented)."""
        return self._values[name].get(tuple(sorted(labels.items())), 0.0)

    def total(self, name: str) -> float:
        """Sum of a counter over all its label sets."""
        return sum(self._values[name].values())

    def render(self) -> str:
        """The exposition text for ``GET /metrics``."""
        lines: list[str] = []
        for name, family in self._families.items():
            lines.append(f"# HELP {family.name} {family.help}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            if family.kind == "gauge":
                lines.append(f"{family.name} {_number(float(self._gauges[name]()))}")
            elif family.kind == "counter":
                lines.extend(self._render_counter(family.name, self._values[name].items()))
            else:
                for labels, hist in self._histograms[name].items():
                    lines.extend(self._render_histogram(family.name, labels, hist))
        return "\n".join(lines) + "\n"

    @staticmethod
    def _render_counter(name: str, series: Iterable[tuple[Labels, float]]) -> list[str]:
        return [f"{name}{_labels(labels)} {_number(value)}" for labels, value in series]

    @staticmethod
    def _render_histogram(name: str, labels: Labels, hist: Histogram) -> list[str]:
        out = []
        cumulative = 0
        for bound, count in zip(hist.buckets, hist.counts, strict=True):
            cumulative += count
            out.append(f"{name}_bucket{_labels(labels, (('le', repr(bound)),))} {cumulative}")
        out.append(f"{name}_bucket{_labels(labels, (('le', '+Inf'),))} {hist.count}")
        out.append(f"{name}_sum{_labels(labels)} {hist.total!r}")
        out.append(f"{name}_count{_labels(labels)} {hist.count}")
        return out
