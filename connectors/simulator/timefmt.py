"""Instants as integer microseconds since the Unix epoch, and their wire spellings.

The simulated clock counts whole microseconds so that every duration is exact. RustPBX
stamps with a nanosecond clock; the extra nanoseconds appended here are below one
microsecond, so truncating a parsed instant to microseconds gives the model's value back.

Fractions are zero-padded as ``str(PAD + n)[1:]`` (``0 <= n < PAD``), which gives the same
digits as a ``:0Nd`` format spec at a fraction of its cost.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

US = 1_000_000
MS = 1_000
PAD3, PAD6, PAD9 = 1_000, 1_000_000, 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_start(text: str) -> int:
    """An RFC 3339 instant (``2026-11-02T08:00:00Z``) as epoch microseconds."""
    value = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


@lru_cache(maxsize=64)
def _day(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")


def _seconds(sec: int) -> str:
    day, rest = divmod(sec, 86_400)
    hour, rest = divmod(rest, 3_600)
    minute, second = divmod(rest, 60)
    return f"{_day(day)}T{hour:02d}:{minute:02d}:{second:02d}"


_SECONDS: dict[int, str] = {}
_MINUTES: dict[int, str] = {}


def seconds_text(sec: int) -> str:
    """``2026-11-02T08:00:03`` for an epoch second, cached (instants cluster in time)."""
    text = _SECONDS.get(sec)
    if text is None:
        if len(_SECONDS) > 50_000:
            _SECONDS.clear()
            _MINUTES.clear()
        minute, second = divmod(sec, 60)
        prefix = _MINUTES.get(minute)
        if prefix is None:
            prefix = _MINUTES[minute] = _seconds(minute * 60)[:-2]
        text = _SECONDS[sec] = prefix + str(100 + second)[1:]
    return text


def rfc3339_autosi(t_us: int, extra_ns: int = 0) -> str:
    """chrono's ``to_rfc3339()``: ``+00:00`` and 0, 3, 6 or 9 fractional digits."""
    sec = t_us // US
    nanos = (t_us - sec * US) * 1000 + extra_ns
    base = _SECONDS.get(sec) or seconds_text(sec)
    if nanos == 0:
        return base + "+00:00"
    if nanos % 1_000_000 == 0:
        return f"{base}.{str(PAD3 + nanos // 1_000_000)[1:]}+00:00"
    if nanos % 1000 == 0:
        return f"{base}.{str(PAD6 + nanos // 1000)[1:]}+00:00"
    return f"{base}.{str(PAD9 + nanos)[1:]}+00:00"


def iso_z_us(t_us: int) -> str:
    """``2026-11-02T08:00:03.123456Z``: microseconds, always six digits."""
    sec = t_us // US
    return f"{_SECONDS.get(sec) or seconds_text(sec)}.{str(PAD6 + t_us - sec * US)[1:]}Z"


def iso_z_ms(t_us: int) -> str:
    """``2026-11-02T08:00:03.123Z``: milliseconds (truncated), as ``system_time`` is sent."""
    sec = t_us // US
    return f"{_SECONDS.get(sec) or seconds_text(sec)}.{str(PAD3 + (t_us - sec * US) // 1000)[1:]}Z"


def iso_z_s(t_us: int) -> str:
    """``2026-11-02T08:00:03Z``: whole seconds (truncated)."""
    sec = t_us // US
    return (_SECONDS.get(sec) or seconds_text(sec)) + "Z"


def truth_time(t_us: int | None) -> str | None:
    """Ground-truth spelling: RFC 3339 UTC with exactly six fractional digits, or None."""
    return None if t_us is None else iso_z_us(t_us)


def nanos_for(t_us: int) -> int:
    """Deterministic sub-microsecond digits (1..999 ns) for an instant stamped in a payload."""
    return 1 + t_us % 997


def date_compact(t_us: int) -> str:
    """``20261102``: the day folder RustPBX archives recordings under."""
    return _day(t_us // US // 86_400).replace("-", "")


def file_stamp(t_us: int) -> str:
    """``2026-11-02_08-11-49``: the stamp inside 1.0-era recording file names."""
    return _seconds(t_us // US).replace("T", "_").replace(":", "-")
