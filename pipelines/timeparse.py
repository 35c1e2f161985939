"""Timestamps as RustPBX sends them: RFC 3339 strings (up to ns) or epoch numbers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|z|[+-]\d{2}:?\d{2})?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN = datetime(1990, 1, 1, tzinfo=UTC)
_MAX = datetime(2200, 1, 1, tzinfo=UTC)
_MAX_EXCLUSIVE = _MAX + timedelta(seconds=1)
_UTC_SUFFIXES = frozenset({"Z", "z", "+00:00", "-00:00", "+0000", "-0000"})


def parse_rfc3339(text: str) -> tuple[datetime, str] | None:
    """Parse to an aware UTC datetime (µs) and a normalized ns-precision string, or None."""
    m = _RFC3339.match(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, tz = m.groups()
    nanos = frac.ljust(9, "0") if frac else "000000000"
    if tz is None or tz in _UTC_SUFFIXES:
        # The fields as sent are the UTC ones: one datetime, no offset arithmetic, and
        # the normalized text from the fields (strftime costs more).
        try:
            value = datetime(int(year), int(month), int(day), int(hour), int(minute),
                             int(second), int(nanos[:6]), tzinfo=UTC)
        except ValueError:
            return None
        # Same bounds as below on the whole second: base <= _MAX <=> value < _MAX + 1 s.
        if not _MIN <= value < _MAX_EXCLUSIVE:
            return None
        return value, f"{year}-{month}-{day}T{hour}:{minute}:{second}.{nanos}Z"
    try:
        base = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError:
        return None
    sign = 1 if tz[0] == "+" else -1
    digits = tz[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    base -= sign * offset
    if not _MIN <= base <= _MAX:
        return None
    value = base + timedelta(microseconds=int(nanos) // 1000)
    return value, base.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos}Z"


def parse_epoch(number: float) -> tuple[datetime, str] | None:
    """Epoch seconds (also ms, µs or ns, told apart by magnitude) to UTC, or None."""
    if number != number or number in (float("inf"), float("-inf")):
        return None
    scaled = float(number)
    for limit, divisor in ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3)):
        if abs(scaled) >= limit:
            scaled /= divisor
            break
    try:
        value = _EPOCH + timedelta(microseconds=round(scaled * 1_000_000))
    except OverflowError:
        return None
    if not _MIN <= value <= _MAX:
        return None
    return value, f"epoch:{number!r}"


def parse_timestamp(value: object) -> tuple[datetime, str] | None:
    """A timestamp in any form RustPBX has sent, or None when it is not one."""
    if isinstance(value, str):  # the common case first
        parsed = parse_rfc3339(value)
        if parsed is None and value.strip().lstrip("-").replace(".", "", 1).isdigit():
            return parse_epoch(float(value))
        return parsed
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return parse_epoch(value)
    return None


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch for an aware datetime."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)
