"""Compiled JSON templates: an event's text built straight from its fields.

Encoding a fresh dict per event was the simulator's main cost. For each (event type,
set of context keys) a small function is generated once that concatenates pre-encoded
context fragments with the encoded own fields, in the order the dialect sends them:
sorted keys with ``null`` for absent typed fields (``current``), or declaration order
with absent optionals left out and the context after the own fields (``v1.0``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from connectors.simulator.timefmt import _SECONDS, PAD9, US, iso_z_ms, iso_z_us, seconds_text

_encode_str: Callable[[str], str] = json.encoder.encode_basestring
encode_str = _encode_str


def _encoder(sort_keys: bool) -> Callable[[Any], str]:
    """A compact encoder (``separators=(",", ":")``, ``ensure_ascii=False``).

    orjson writes the same bytes as :mod:`json` for strings, integers, booleans, ``None``,
    lists and dicts, several times faster; what it refuses (integers beyond 64 bits,
    non-string keys) goes to :mod:`json`. Floats would differ in exponent spelling
    (``1e16`` vs ``1e+16``): the simulator encodes none.
    """
    slow = json.JSONEncoder(sort_keys=sort_keys, separators=(",", ":"),
                            ensure_ascii=False).encode
    dumps, option = orjson.dumps, orjson.OPT_SORT_KEYS if sort_keys else 0

    def encode(value: Any) -> str:
        try:
            return dumps(value, option=option).decode()
        except TypeError:
            return slow(value)

    return encode


SORTED = _encoder(True)
ORDERED = _encoder(False)
encode_ordered = ORDERED

# (event fields, the leg's call id, its encoded context) -> the event's JSON text
Build = Callable[[Mapping[str, Any], Any, Any], str]


class RawJson(str):
    """A value that is already JSON text (a constant object encoded once)."""

    __slots__ = ()


def raw_json(value: Any) -> RawJson:
    """Encode a constant once; both dialects' templates copy it verbatim."""
    return RawJson(SORTED(value))


def enc_sorted(v: Any) -> str:
    """One JSON value, compact, nested keys sorted (today's server)."""
    c = v.__class__
    if c is RawJson:
        return str.__str__(v)
    if c is str:
        return _encode_str(v)
    if v is None:
        return "null"
    if c is int:
        return int.__repr__(v)
    if c is bool:
        return "true" if v else "false"
    return SORTED(v)


def enc_ordered(v: Any) -> str:
    """One JSON value, compact, nested keys in insertion order (1.0)."""
    c = v.__class__
    if c is RawJson:
        return str.__str__(v)
    if c is str:
        return _encode_str(v)
    if v is None:
        return "null"
    if c is int:
        return int.__repr__(v)
    if c is bool:
        return "true" if v else "false"
    return ORDERED(v)


def time_current(v: int | None) -> str:
    """A payload instant as chrono's RFC 3339 of a nanosecond clock (9 digits), or ``null``."""
    if v is None:
        return "null"
    sec = v // US
    nanos = (v - sec * US) * 1000 + 1 + v % 997  # timefmt.nanos_for
    return f'"{_SECONDS.get(sec) or seconds_text(sec)}.{str(PAD9 + nanos)[1:]}+00:00"'


def time_us(v: int) -> str:
    return f'"{iso_z_us(v)}"'


def time_ms(v: int) -> str:
    return f'"{iso_z_ms(v)}"'


_NS: dict[str, Any] = {"_e": enc_sorted, "_o": enc_ordered, "_s": _encode_str,
                       "_t": time_current, "_tu": time_us, "_tm": time_ms, "US": US}


def _fetch(name: str, var: str, fn: str, encoded_cid: str = "") -> str:
    """Generated statements: read a field and encode it (strings inline, the common case).

    ``encoded_cid`` is where the template finds the leg's call id already encoded, if
    anywhere.
    """
    if name == "call_id" and encoded_cid:
        return f'    {var} = {fn}(d["call_id"]) if "call_id" in d else {encoded_cid}\n'
    source = '(d["call_id"] if "call_id" in d else cid)' if name == "call_id" \
        else f"d.get({name!r})"
    if fn in ("_e", "_o"):
        return (f"    {var} = {source}\n    c_ = {var}.__class__\n"
                f"    {var} = _s({var}) if c_ is str else 'null' if {var} is None else "
                f"int.__repr__({var}) if c_ is int else {fn}({var})\n")
    return f"    {var} = {fn}({source})\n"


def _fstring_literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def compile_current(kind: str, fields: tuple[str, ...], ctx_keys: tuple[str, ...],
                    times: frozenset[str]) -> Build:
    """Sorted keys: own fields (``None`` as ``null``) win over context keys of the same name.

    ``ctx_keys`` are the leg's context keys, sorted; the template reads their encoded
    values from the tuple ``c`` by position, and after them the leg's encoded call id (see
    :func:`context_values`).
    """
    own = set(fields) | {"event_type"}
    position = {key: i for i, key in enumerate(ctx_keys)}
    body = ""
    pieces: list[str] = []
    for i, key in enumerate(sorted(own | set(ctx_keys))):
        sep = "," if pieces else ""
        if key == "event_type":
            pieces.append(_fstring_literal(f'{sep}"event_type":"{kind}"'))
        elif key in own:
            var = f"v{i}"
            encoded_cid = f"c[{len(ctx_keys)}]" if ctx_keys else ""
            body += _fetch(key, var, "_t" if key in times else "_e", encoded_cid)
            pieces.append(_fstring_literal(f'{sep}"{key}":') + "{" + var + "}")
        else:
            pieces.append(_fstring_literal(f'{sep}"{key}":') + "{c[" + str(position[key]) + "]}")
    text = "".join(pieces)
    src = f"def build(d, cid, c):\n{body}    return f'''{{{{{text}}}}}'''\n"
    scope = dict(_NS)
    exec(compile(src, f"<current:{kind}>", "exec"), scope)
    return scope["build"]


def compile_v1(kind: str, fields: tuple[str, ...], keep_null: frozenset[str],
               formats: Mapping[str, str], renamed: Mapping[str, str]) -> Build:
    """Declaration order, ``None`` left out (unless kept), then the context text ``c``.

    Each field becomes ``,"key":value`` or nothing, the context ``,text``; the template
    drops the first comma (cheaper than collecting the parts in a list to join them).
    """
    lines = ["def build(d, cid, c):"]
    parts = []
    for i, key in enumerate(fields):
        source = '(d["call_id"] if "call_id" in d else cid)' if key == "call_id" \
            else f"d.get({renamed.get(key, key)!r})"
        fn = formats.get(key, "_o")
        lines.append(f"    v = {source}")
        encoded = ("_s(v) if v.__class__ is str else int.__repr__(v) if v.__class__ is int "
                   "else _o(v)") if fn == "_o" else f"{fn}(v)"
        if key in keep_null:
            lines.append(f"    f{i} = ',\"{key}\":' + ('null' if v is None else {encoded})")
        else:
            lines.append(f"    f{i} = '' if v is None else ',\"{key}\":' + ({encoded})")
        parts.append(f"{{f{i}}}")
    lines.append(f"    s = f'{''.join(parts)},{{c}}' if c else f'{''.join(parts)}'")
    lines.append("    return f'{{{s[1:]}}}'")
    scope = dict(_NS)
    exec(compile("\n".join(lines) + "\n", f"<v1:{kind}>", "exec"), scope)
    return scope["build"]


def context_values(ctx: Mapping[str, Any], call_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A leg's context as (sorted keys, their values encoded with sorted nested keys, then
    the encoded ``call_id``)."""
    keys = tuple(sorted(ctx))
    values = [ctx[k] for k in keys]
    return keys, (*[_encode_str(v) if v.__class__ is str else enc_sorted(v) for v in values],
                  _encode_str(call_id))


def context_fragments_v1(ctx: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """1.0's context as (keys in order, ``"key":value`` fragments, nested keys in order)."""
    keys = tuple(ctx)
    return keys, tuple([f'"{k}":{_encode_str(v) if v.__class__ is str else enc_ordered(v)}'
                        for k, v in ctx.items()])
