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

from connectors.simulator.timefmt import US, iso_z_ms, iso_z_us, nanos_for, seconds_text

_encode_str: Callable[[str], str] = json.encoder.encode_basestring
c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
encode_str = _encode_str


def _encoder(sort_keys: bool) -> Callable[[Any], str]:
    """A reusable compact encoder (``json.dumps`` rebuilds its C encoder on every call)."""
    slow = json.JSONEncoder(sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False)
    if c_make_encoder is None:
        return slow.encode
    fast = c_make_encoder(None, slow.default, _encode_str, None, ":", ",", sort_keys, False, True)
    return lambda value: "".join(fast(value, 0))


SORTED = _encoder(True)
ORDERED = _encoder(False)
encode_ordered = ORDERED

Build = Callable[[Mapping[str, Any], str, Mapping[str, str]], str]


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
    if c is list and all(x.__class__ is str for x in v):
        return "[" + ",".join([_encode_str(x) for x in v]) + "]"
    if c is dict and all(x.__class__ is str for x in v.values()):
        return "{" + ",".join([_encode_str(k) + ":" + _encode_str(x)
                               for k, x in sorted(v.items())]) + "}"
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
    if c is list and all(x.__class__ is str for x in v):
        return "[" + ",".join([_encode_str(x) for x in v]) + "]"
    return ORDERED(v)


def time_current(v: int | None) -> str:
    """A payload instant as chrono's RFC 3339 of a nanosecond clock (9 digits), or ``null``."""
    if v is None:
        return "null"
    sec, frac = divmod(v, US)
    return f'"{seconds_text(sec)}.{frac * 1000 + nanos_for(v):09d}+00:00"'


def time_us(v: int) -> str:
    return f'"{iso_z_us(v)}"'


def time_ms(v: int) -> str:
    return f'"{iso_z_ms(v)}"'


_NS: dict[str, Any] = {"_e": enc_sorted, "_o": enc_ordered, "_s": _encode_str,
                       "_t": time_current, "_tu": time_us, "_tm": time_ms, "US": US}


def _fetch(name: str, var: str, fn: str) -> str:
    """Generated statements: read a field and encode it (strings inline, the common case)."""
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
    """Sorted keys: own fields (``None`` as ``null``) win over context keys of the same name."""
    own = set(fields) | {"event_type"}
    body = ""
    pieces: list[str] = []
    run: list[str] = []  # context keys with no own key between them: one joined fragment
    for i, key in enumerate([*sorted(own | set(ctx_keys)), ""]):
        if key in own or not key:
            if run:
                body += f"    k{i} = c[{','.join(run)!r}]\n"
                pieces.append(("," if pieces else "") + "{k" + str(i) + "}")
                run = []
        else:
            run.append(key)
            continue
        if not key:
            break
        sep = "," if pieces else ""
        if key == "event_type":
            pieces.append(_fstring_literal(f'{sep}"event_type":"{kind}"'))
        else:
            var = f"v{i}"
            body += _fetch(key, var, "_t" if key in times else "_e")
            pieces.append(_fstring_literal(f'{sep}"{key}":') + "{" + var + "}")
    text = "".join(pieces)
    src = f"def build(d, cid, c):\n{body}    return f'''{{{{{text}}}}}'''\n"
    scope = dict(_NS)
    exec(compile(src, f"<current:{kind}>", "exec"), scope)
    return scope["build"]


def compile_v1(kind: str, fields: tuple[str, ...], keep_null: frozenset[str],
               formats: Mapping[str, str], renamed: Mapping[str, str]) -> Build:
    """Declaration order, ``None`` left out (unless kept), then the context text ``c[""]``."""
    lines = ["def build(d, cid, c):", "    p = []"]
    for key in fields:
        source = '(d["call_id"] if "call_id" in d else cid)' if key == "call_id" \
            else f"d.get({renamed.get(key, key)!r})"
        fn = formats.get(key, "_o")
        lines.append(f"    v = {source}")
        encoded = ("_s(v) if v.__class__ is str else int.__repr__(v) if v.__class__ is int "
                   "else _o(v)") if fn == "_o" else f"{fn}(v)"
        if key in keep_null:
            lines.append(f"    p.append('\"{key}\":' + ('null' if v is None else {encoded}))")
        else:
            lines.append("    if v is not None:")
            lines.append(f"        p.append('\"{key}\":' + ({encoded}))")
    lines.append("    ctx = c.get('')")
    lines.append("    if ctx:")
    lines.append("        p.append(ctx)")
    lines.append("    return '{' + ','.join(p) + '}'")
    scope = dict(_NS)
    exec(compile("\n".join(lines) + "\n", f"<v1:{kind}>", "exec"), scope)
    return scope["build"]


class Fragments(dict[str, str]):
    """Encoded context of one leg: ``"key":value`` per key; a key ``a,b,c`` is the joined
    run of those fragments, built on first use and kept."""

    __slots__ = ()

    def __missing__(self, run: str) -> str:
        text = self[run] = ",".join([self[k] for k in run.split(",")])
        return text


def fragments_sorted(ctx: Mapping[str, Any]) -> Fragments:
    """Context values pre-encoded as ``"key":value`` fragments (sorted nested keys)."""
    return Fragments({k: f'"{k}":{enc_sorted(v)}' for k, v in ctx.items()})


def fragment_text_v1(ctx: Mapping[str, Any], exclude: frozenset[str]) -> str:
    """1.0's flattened context after an event's own fields, minus keys it already has."""
    return ",".join(f'"{k}":{enc_ordered(v)}' for k, v in ctx.items() if k not in exclude)
