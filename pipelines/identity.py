"""Deterministic event ids.

Rule: an event's identity is (pbx, fact type, fact content, occurrence).
- *Fact content* is the event's own payload without the keys that depend on how it was
  delivered (call context added by enrichment, ``session_id``, ``root``, origin IPs), as
  canonical JSON. The resume cache holds un-enriched events and the webhook enriched ones,
  so both must hash alike. ``call_incoming`` and ``call_created`` are one fact type.
- *Occurrence* tells apart genuinely repeated identical facts (``call_ringing`` on every
  queue retry carries the same payload). A delivery with a dispatch instant (the webhook
  ``timestamp``, the resume cache's ``timestamp``, a 1.0 ``sequence``) that was seen before
  is the same occurrence: a redelivery. Otherwise a delivery joins the earliest occurrence
  not yet delivered on the same (channel, target); the target is the webhook envelope
  ``call_id``, so the 2-3 by-design deliveries of ``call_bridged`` or supervisor events to
  different legs collapse into one event, while a second ``call_ringing`` to the same call
  becomes occurrence 1. Live WebSocket frames and webhook bodies of the same event meet on
  the same occurrence because both channels carry one call's events in dispatch order.
The occurrence table is bounded (LRU by fact). It survives restarts through Kafka: every
message carries an ``rwi.occurrence`` header (:func:`occurrence_note`: fact key, occurrence,
channel, target, instant, and for a delivery without an instant its arrival order), and a
starting ingest service reads the recent tail of its topics back into the table
(:mod:`pipelines.identity_restore`) before it accepts events — the paths' histories too, so
the first 1.0 replay after a restart is aligned like any other. Without
that, a restarted service would count each repeated fact from 0 again and give a new
repetition the id of an old one. A fact whose repetitions are older than that tail is
counted from 0 again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from pipelines.catalog import ALIASES
from pipelines.events import canonical_json_bytes

# Keys whose presence or value depends on the delivery path, not on the fact.
DELIVERY_KEYS = frozenset(
    {
        "session_id",
        "caller",
        "callee",
        "caller_name",
        "callee_name",
        "ani",
        "dnis",
        "direction",
        "trunk",
        "app_id",
        "routing_target",
        "agent_id",
        "agent_name",
        "root",
        "root_call_id",
        "src_ip",
        "client_ip",
        "event_type",
    }
)


@lru_cache(maxsize=4096)
def _fact_prefix(pbx: str, event_type: str) -> bytes:
    return pbx.encode() + b"\x00" + ALIASES.get(event_type, event_type).encode() + b"\x00"


def fact_key(pbx: str, event_type: str, payload: Mapping[str, Any]) -> bytes:
    """Hash of what the event says, independent of delivery path and enrichment."""
    fact = {
        k: v for k, v in payload.items() if k not in DELIVERY_KEYS and not k.startswith("envelope_")
    }
    return hashlib.sha256(_fact_prefix(pbx, event_type) + canonical_json_bytes(fact)).digest()


OCCURRENCE_HEADER = "rwi.occurrence"
_KEY_BYTES = 32


class OccurrenceNote(NamedTuple):
    """One ``assign`` decision as an ``rwi.occurrence`` header carries it."""

    key: bytes
    occurrence: int
    channel: str
    target: str
    instant: str | None
    arrival: int | None = None
    """For a delivery without an instant: where it came in its path's history, as an
    increasing number (see :func:`occurrence_note`); None in notes written before it was
    recorded."""


def occurrence_note(key: bytes, occurrence: int, channel: str, target: str,
                    instant: str | None, arrival: int | None = None) -> bytes:
    """The ``rwi.occurrence`` header value: enough to replay one ``assign`` decision.

    ``arrival`` orders the deliveries that carry no instant, whose path history a 1.0
    replay is aligned against (OccurrenceTracker.align_replay); a service numbers them from
    its start time in nanoseconds, one up per delivery, so the numbers of a later run are
    larger. Layout: 32-byte key, 4-byte occurrence, instant flag, then channel, target,
    instant and (when given) arrival in decimal, separated by NUL."""
    parts = [channel, target, instant if instant is not None else ""]
    if arrival is not None:
        parts.append(str(arrival))
    flag = b"\x01" if instant is not None else b"\x00"
    return (key + occurrence.to_bytes(4, "big") + flag
            + "\x00".join(parts).encode("utf-8", "surrogatepass"))


def parse_occurrence_note(note: bytes) -> OccurrenceNote | None:
    """The decision a header records, or None for a malformed one."""
    if len(note) < _KEY_BYTES + 5:
        return None
    key, occurrence = note[:_KEY_BYTES], int.from_bytes(note[_KEY_BYTES:_KEY_BYTES + 4], "big")
    has_instant = note[_KEY_BYTES + 4] == 1
    parts = note[_KEY_BYTES + 5:].decode("utf-8", "surrogatepass").split("\x00")
    if len(parts) not in (3, 4):
        return None
    arrival = None
    if len(parts) == 4:
        if not parts[3].isdigit():
            return None
        arrival = int(parts[3])
    channel, target, instant = parts[:3]
    return OccurrenceNote(key, occurrence, channel, target,
                          instant if has_instant else None, arrival)


def event_id(key: bytes, occurrence: int) -> str:
    """32 hex characters from the fact key and the occurrence number."""
    return hashlib.sha256(key + occurrence.to_bytes(8, "big")).hexdigest()[:32]


@dataclass(slots=True)
class _Fact:
    """Occurrences of one fact: which instants and (channel, target) deliveries each has."""

    count: int = 0
    by_instant: dict[str, int] = field(default_factory=dict)
    delivered: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    cursor: dict[tuple[str, str], int] = field(default_factory=dict)


class OccurrenceTracker:
    """Assigns occurrence numbers to deliveries of identical facts (see module docstring).

    Each step is O(1) amortized: per (channel, target) a cursor skips occurrences that
    delivery path has already seen, so a fact repeated n times costs O(n) in all.
    """

    def __init__(self, max_facts: int = 1_000_000, live_history: int = 4096) -> None:
        self._facts: OrderedDict[bytes, _Fact] = OrderedDict()
        self._max = max_facts
        # Per delivery path, the latest deliveries that carried no instant, in arrival order:
        # what a replay without instants is aligned against (align_replay).
        self._history: dict[tuple[str, str], deque[tuple[bytes, int]]] = {}
        self._history_len = live_history
        # Where the last aligned replay begins in its path's history (see rewrite_history).
        self.replay_start = 0
        # While restoring: per path, the arrival number of each delivery without an instant.
        self._restoring: dict[tuple[str, str], dict[tuple[bytes, int], int]] = {}

    def __len__(self) -> int:
        return len(self._facts)

    def _fact(self, key: bytes) -> _Fact:
        """The fact's entry, created if new, marked most recently used."""
        fact = self._facts.get(key)
        if fact is None:
            fact = _Fact()
            self._facts[key] = fact
            if len(self._facts) > self._max:
                self._facts.popitem(last=False)
        else:
            self._facts.move_to_end(key)
        return fact

    def assign(self, key: bytes, channel: str, target: str, instant: str | None) -> int:
        fact = self._fact(key)
        delivery = (channel, target)
        seen = fact.delivered.get(delivery)
        if seen is None:
            seen = fact.delivered[delivery] = set()
        chosen = fact.by_instant.get(instant) if instant is not None else None
        if chosen is None:
            chosen = fact.cursor.get(delivery, 0)
            while chosen in seen:
                chosen += 1
            fact.cursor[delivery] = chosen + 1
            if chosen >= fact.count:
                fact.count = chosen + 1
        seen.add(chosen)
        if instant is not None:
            fact.by_instant[instant] = chosen
        else:
            history = self._history.get(delivery)
            if history is None:
                history = self._history[delivery] = deque(maxlen=self._history_len)
            history.append((key, chosen))
        return chosen

    def rewrite_history(self, channel: str, target: str, start: int,
                        entries: list[tuple[bytes, int]]) -> None:
        """Replace the path's history from ``start`` on with ``entries`` — a replay's events
        in the server's order, each with its occurrence. The replay knows the true order of
        events received live and of those it delivered for the first time (missed ones, and
        events never sent live to this session); the next replay is aligned against it."""
        history = self._history.get((channel, target))
        if history is None:
            history = self._history[(channel, target)] = deque(maxlen=self._history_len)
        kept = list(history)[:start]
        history.clear()
        history.extend(kept)
        history.extend(entries)

    def align_replay(self, keys: list[bytes], channel: str, target: str) -> list[int | None]:
        """Which of a replay's events were already received on this path, and as what.

        A 1.0 server answers ``session.resume`` by sending its cached events again as plain
        frames, in dispatch order, with neither a sequence nor a timestamp: the cache's
        oldest events were received live before the connection dropped, the newest were
        missed. Matched by content alone, a replayed event would look like a new repetition
        of its fact. Instead the path's recent history is aligned with the replay, as
        subsequences (the cache also holds events never sent to this session): an anchor —
        preferably a recent live event whose fact occurs once in the replay — is located,
        and the history is matched backwards and forwards from it. Replayed events matched
        to history entries redeliver those occurrences; the rest are new (None: assign).
        """
        out: list[int | None] = [None] * len(keys)
        history = self._history.get((channel, target))
        self.replay_start = len(history) if history else 0
        if not history or not keys:
            return out
        past = list(history)
        anchor = _find_anchor(keys, past)
        if anchor is None:
            return out  # no overlap: the gap was longer than the server's cache
        p, i = anchor
        positions = _positions(keys)
        r, h = p, i
        while r >= 0 and h >= 0:  # backwards from the anchor
            key = past[h][0]
            if keys[r] == key:
                out[r] = past[h][1]
                self.replay_start = h
                h -= 1
                r -= 1
            elif not _occurs_before(positions, key, r):
                h -= 1  # received, but not in the cache (a server's own control frame)
            else:
                r -= 1  # cached, but never sent to this session
        r, h = p + 1, i + 1
        while r < len(keys) and h < len(past):  # forwards: the rest received before the drop
            key = past[h][0]
            if keys[r] == key:
                out[r] = past[h][1]
                h += 1
                r += 1
            elif not _occurs_after(positions, key, r):
                h += 1
            else:
                r += 1
        return out
        past = list(history)
        window = min(len(past), 16)
        anchor = -1
        last_key = past[-1][0]
        for p in range(len(keys) - 1, -1, -1):
            if keys[p] != last_key:
                continue
            h, r = len(past) - 2, p - 1
            matched = 1
            while matched < window and r >= 0 and h >= 0:
                if keys[r] == past[h][0]:
                    matched += 1
                    h -= 1
                r -= 1
            # Accepted when the history's last ``window`` events all match, or the match
            # ran through the whole history or to the start of the replay (the cache's
            # first event) without a miss.
            if matched == window or h < 0 or r < 0:
                anchor = p
                break
        if anchor < 0:
            return out  # no overlap: the gap was longer than the server's cache
        h = len(past) - 1
        for r in range(anchor, -1, -1):
            if h < 0:
                break
            if keys[r] == past[h][0]:
                out[r] = past[h][1]
                h -= 1
        return out

    def restore(self, key: bytes, occurrence: int, channel: str, target: str,
                instant: str | None, arrival: int | None = None) -> None:
        """Replay a decision :meth:`assign` made before a restart (read back from Kafka).

        Idempotent and order-insensitive: the delivery path has seen ``occurrence``, the
        instant maps to it, and the fact has at least ``occurrence + 1`` repetitions. The
        per-path cursor is left alone; ``assign`` skips whatever the path has seen. A
        delivery without an instant but with its ``arrival`` number is kept for the path's
        history, which :meth:`finish_restore` puts back in arrival order.
        """
        fact = self._fact(key)
        fact.delivered.setdefault((channel, target), set()).add(occurrence)
        if instant is not None:
            fact.by_instant[instant] = occurrence
        elif arrival is not None:
            arrivals = self._restoring.get((channel, target))
            if arrivals is None:
                arrivals = self._restoring[(channel, target)] = {}
            entry = (key, occurrence)
            # An event published again by a replay keeps its latest place, as
            # rewrite_history gave it.
            if arrival > arrivals.get(entry, -1):
                arrivals[entry] = arrival
            if len(arrivals) > 4 * self._history_len:  # keep memory bounded while reading
                newest = sorted(arrivals.items(), key=lambda item: item[1])
                self._restoring[(channel, target)] = dict(newest[-2 * self._history_len:])
        if occurrence >= fact.count:
            fact.count = occurrence + 1

    def finish_restore(self) -> int:
        """Rebuild each path's history from the restored deliveries without an instant:
        the newest ``live_history`` of them, in arrival order, ahead of anything received
        since. Returns how many history entries were restored."""
        restored = 0
        for path, arrivals in self._restoring.items():
            ordered = sorted(arrivals.items(), key=lambda item: item[1])
            entries = [entry for entry, _ in ordered[-self._history_len:]]
            history = self._history.get(path)
            live = list(history) if history is not None else []
            self._history[path] = deque(entries + live, maxlen=self._history_len)
            restored += len(entries)
        self._restoring.clear()
        return restored


_ANCHOR_WINDOW = 16  # history events that must match backwards from an anchor
_ANCHOR_SEARCH = 256  # how far back in the history a unique anchor is looked for


def _positions(keys: list[bytes]) -> dict[bytes, list[int]]:
    positions: dict[bytes, list[int]] = {}
    for r, key in enumerate(keys):
        positions.setdefault(key, []).append(r)
    return positions


def _occurs_before(positions: dict[bytes, list[int]], key: bytes, r: int) -> bool:
    """Is ``key`` in the replay at or before index ``r``?"""
    found = positions.get(key)
    return bool(found) and found[0] <= r  # type: ignore[index]


def _occurs_after(positions: dict[bytes, list[int]], key: bytes, r: int) -> bool:
    """Is ``key`` in the replay at or after index ``r``?"""
    found = positions.get(key)
    return bool(found) and found[-1] >= r  # type: ignore[index]


def _matches_back(keys: list[bytes], past: list[tuple[bytes, int]], p: int, i: int,
                  positions: dict[bytes, list[int]]) -> bool:
    """Do the history's events up to ``i`` match the replay's up to ``p`` backwards, as a
    subsequence of it, for a window (or until either runs out)? History events that the
    replay does not hold at all before that point are passed over, without counting."""
    matched, r, h = 0, p, i
    while matched < _ANCHOR_WINDOW and r >= 0 and h >= 0:
        key = past[h][0]
        if keys[r] == key:
            matched += 1
            h -= 1
            r -= 1
        elif r == p:
            return False
        elif not _occurs_before(positions, key, r):
            h -= 1
        else:
            r -= 1
    return matched == _ANCHOR_WINDOW or h < 0 or r < 0


def _find_anchor(keys: list[bytes], past: list[tuple[bytes, int]]) -> tuple[int, int] | None:
    """``(replay index, history index)`` of one event received live and replayed."""
    positions = _positions(keys)
    # A recent live event whose fact the replay holds once cannot be mistaken for another.
    for i in range(len(past) - 1, max(len(past) - 1 - _ANCHOR_SEARCH, -1), -1):
        found = positions.get(past[i][0])
        if (found is not None and len(found) == 1
                and _matches_back(keys, past, found[0], i, positions)):
            return found[0], i
    # Otherwise the latest replay position of the last live event that matches backwards.
    last = len(past) - 1
    for p in reversed(positions.get(past[last][0], [])):
        if _matches_back(keys, past, p, last, positions):
            return p, last
    return None
