"""Webhook bodies and WebSocket frames, byte for byte as each dialect sends them."""

from __future__ import annotations

from connectors.simulator.records import Fact
from connectors.simulator.render_current import CurrentRenderer, Emission
from connectors.simulator.render_v1 import V1Renderer
from connectors.simulator.templates import enc_sorted, encode_ordered
from connectors.simulator.templates import encode_str as _s
from connectors.simulator.timefmt import _SECONDS, PAD9, US, seconds_text

V1_FRAMES = ("wrapped", "wrapped-rwi", "flat")


class CurrentWire:
    """Envelope ``{"call_id","event","event_type","rwi","timestamp"}`` (keys sorted), with
    ``timestamp`` the RFC 3339 dispatch instant of a nanosecond clock."""

    dialect = "current"

    def __init__(self) -> None:
        self.renderer = CurrentRenderer()
        self._envelope_ids: dict[str, str] = {}
        self._last_t = -1
        self._same = 0
        self.last_stamp = ""

    def _nanos(self, t_us: int) -> int:
        """Sub-microsecond digits: rising within one microsecond, so each dispatch differs."""
        if t_us == self._last_t:
            self._same += 1
        else:
            self._last_t, self._same = t_us, 0
        return 1 + t_us % 397 + 13 * min(self._same, 46)

    def stamp(self, t_us: int) -> str:
        """The dispatch instant of one delivery (chrono ``to_rfc3339`` of a ns clock)."""
        sec = t_us // US
        nanos = (t_us - sec * US) * 1000 + self._nanos(t_us)
        self.last_stamp = stamp = f"{seconds_text(sec)}.{str(PAD9 + nanos)[1:]}+00:00"
        return stamp

    def body(self, em: Emission) -> str:
        return (f'{{"call_id":{enc_sorted(em[2])},"event":{em[5]},"event_type":"{em[1]}",'
                f'"rwi":"1.0","timestamp":"{self.stamp(em[0])}"}}')

    def render_bodies(self, facts: list[Fact], kinds: list[str]) -> list[str]:
        """Render a batch of facts straight to webhook bodies (``body`` of each emission).

        The emissions are not kept: this is the fast path for sinks that need only the
        bodies. Appends the event type of every body to ``kinds``, for the counts.
        """
        render = self.renderer.render
        out: list[str] = []
        append, kind_of = out.append, kinds.append
        last_t, same = self._last_t, self._same
        seconds = _SECONDS
        # The previous batch may end at the instant this one starts with.
        last_sec = last_t // US
        prefix = seconds_text(last_sec) if last_t >= 0 else ""
        nanos0 = (last_t - last_sec * US) * 1000 + 1 + last_t % 397  # at ``last_t``, same == 0
        frac = ""
        envelope_ids = self._envelope_ids
        for fact in facts:
            for t, kind, env, _d, _r, text, _raw in render(fact):
                kind_of(kind)
                env_json = envelope_ids.get(env)
                if env_json is None:
                    env_json = _envelope_id(envelope_ids, env)
                # _nanos and stamp, inlined: most instants differ from the previous one,
                # and most seconds equal it.
                if t != last_t:
                    last_t, same = t, 0
                    sec = t // US
                    if sec != last_sec:
                        last_sec, prefix = sec, seconds.get(sec) or seconds_text(sec)
                    nanos0 = (t - sec * US) * 1000 + 1 + t % 397
                    frac = str(PAD9 + nanos0)[1:]
                else:
                    same += 1
                    frac = str(PAD9 + nanos0 + 13 * (same if same < 46 else 46))[1:]
                append(f'{{"call_id":{env_json},"event":{text},"event_type":"{kind}",'
                       f'"rwi":"1.0","timestamp":"{prefix}.{frac}+00:00"}}')
        self._last_t, self._same = last_t, same
        if frac:
            self.last_stamp = f"{prefix}.{frac}+00:00"
        return out

    def frame(self, em: Emission) -> str:
        """The live WebSocket frame: the flat enriched event."""
        return em[5]

    def resume_entry(self, em: Emission) -> str:
        """A ``session.resume`` cache entry: the raw event nested under ``payload``, stamped
        with the same dispatch instant as the webhook body just made for it."""
        raw = self.renderer.raw_text(em[6])
        inner_id = em[6][2] if isinstance(em[6], tuple) else None
        if isinstance(em[6], tuple) and "call_id" in em[6][1]:
            inner_id = em[6][1]["call_id"]
        elif isinstance(em[6], dict):
            inner_id = em[6].get("call_id")
        if em[1] in ("call_bridged", "conference_created", "conference_destroyed",
                     "conference_error"):
            inner_id = None  # events without a key of their own
        return (f'{{"call_id":{enc_sorted(em[2])},"event":{{"call_id":{enc_sorted(inner_id)},'
                f'"event_type":"{em[1]}","payload":{raw}}},"timestamp":"{self.last_stamp}"}}')


class V1Wire:
    """Envelope ``{"rwi","sequence","timestamp"(epoch s),"call_id","event_type","event"}``."""

    dialect = "v1.0"

    def __init__(self, event_shape: str = "flat", frame_shape: str = "wrapped") -> None:
        self.renderer = V1Renderer()
        self._envelope_ids: dict[str, str] = {}
        self.nested = event_shape == "nested"
        self.frame_shape = frame_shape

    @property
    def sequence(self) -> int:
        return self.renderer.sequence

    @staticmethod
    def _text(em: Emission, seq: int) -> str:
        if em[1] != "session_resumed":
            return em[5]
        session_id, behind = em[6]
        return encode_ordered({"session_id": session_id,
                               "last_sequence": max(0, seq - int(behind))})

    def body(self, em: Emission) -> str:
        self.renderer.sequence += 1
        text = self._text(em, self.renderer.sequence)
        event = f'{{"{em[1]}":{text}}}' if self.nested else text
        return (f'{{"rwi":"1.0","sequence":{self.renderer.sequence},"timestamp":{em[0] // US},'
                f'"call_id":{enc_sorted(em[2])},"event_type":"{em[1]}","event":{event}}}')

    def render_bodies(self, facts: list[Fact], kinds: list[str]) -> list[str]:
        """Render a batch of facts straight to webhook bodies (see ``CurrentWire``)."""
        renderer = self.renderer
        render = renderer.render
        seq = renderer.sequence
        out: list[str] = []
        append, kind_of = out.append, kinds.append
        nested = self.nested
        envelope_ids = self._envelope_ids
        # The epoch second's digits, made once per second (formatting an int is dear).
        last_sec, sec_text = -1, ""
        for fact in facts:
            for t, kind, env, _d, _r, text, raw in render(fact):
                kind_of(kind)
                env_json = envelope_ids.get(env)
                if env_json is None:
                    env_json = _envelope_id(envelope_ids, env)
                seq += 1
                if not text:
                    text = self._text((t, kind, env, _d, _r, text, raw), seq)
                event = f'{{"{kind}":{text}}}' if nested else text
                sec = t // US
                if sec != last_sec:
                    last_sec, sec_text = sec, str(sec)
                append(f'{{"rwi":"1.0","sequence":{seq},"timestamp":{sec_text},'
                       f'"call_id":{env_json},"event_type":"{kind}","event":{event}}}')
        renderer.sequence = seq
        return out

    def frame(self, em: Emission) -> str:
        """1.0-era frames: ``{"call_ringing":{...}}``, optionally with ``"rwi"``, or flat."""
        text = self._text(em, self.renderer.sequence)
        if self.frame_shape == "flat":
            return text
        if self.frame_shape == "wrapped-rwi":
            return f'{{"rwi":"1.0","{em[1]}":{text}}}'
        return f'{{"{em[1]}":{text}}}'


Wire = CurrentWire | V1Wire
_ENVELOPE_IDS_MAX = 100_000


def _envelope_id(cache: dict[str, str], call_id: str) -> str:
    """The envelope's ``call_id`` encoded, remembered: a call's events share it."""
    if len(cache) >= _ENVELOPE_IDS_MAX:
        cache.clear()
    text = cache[call_id] = _s(call_id)
    return text


def make_wire(dialect: str, *, event_shape: str = "flat", frame_shape: str = "wrapped") -> Wire:
    """The encoder (and its renderer) for a dialect."""
    if dialect == "v1.0":
        return V1Wire(event_shape, frame_shape)
    return CurrentWire()
