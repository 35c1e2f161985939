"""Field kinds derived from the ``.avsc`` files, and tolerant coercion of JSON values to them."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from pipelines import avro
from pipelines.catalog import CATEGORY_SCHEMA
from pipelines.events import canonical_json

_MISSING = object()
MISSING = _MISSING
"""What :func:`coerce` returns for a value that cannot be typed without losing information."""
RESERVED = ("meta", "context", "extra")


def _kind(avro_field: Mapping[str, Any]) -> str:
    ftype = avro_field["type"]
    if isinstance(ftype, list):
        ftype = next(t for t in ftype if t != "null")
    if avro_field.get("rwi.json"):
        return "json"
    if isinstance(ftype, dict):
        return str(ftype["type"]) if ftype["type"] in ("array", "map") else str(ftype.get("type"))
    return str(ftype)


@cache
def payload_kinds(category: str) -> dict[str, str]:
    """Payload field name -> kind for a category (meta, context and extra excluded)."""
    definition = avro.raw_definition(CATEGORY_SCHEMA[category])
    return {f["name"]: _kind(f) for f in definition["fields"] if f["name"] not in RESERVED}


@cache
def context_kinds() -> dict[str, str]:
    """CallContext field name -> kind (``root`` is a nested record)."""
    definition = avro.raw_definition("rwi.etl.CallContext")
    return {
        f["name"]: ("record" if f["name"] == "root" else _kind(f)) for f in definition["fields"]
    }


@cache
def root_fields() -> tuple[str, ...]:
    return tuple(f["name"] for f in avro.raw_definition("rwi.etl.RootCall")["fields"])


def coerce(value: Any, kind: str) -> Any:
    """Value typed to ``kind``, or ``_MISSING`` when it cannot be without losing information."""
    if value is None:
        return None
    if kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return _MISSING
    if kind == "long":
        if isinstance(value, bool):
            return _MISSING
        if isinstance(value, int):
            return value if -(2**63) <= value < 2**63 else _MISSING
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            number = int(value.strip())
            return number if -(2**63) <= number < 2**63 else _MISSING
        return _MISSING
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if value in (0, 1) and isinstance(value, int):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return _MISSING
    if kind == "double":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return _MISSING
    if kind == "array":
        if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            return [v if isinstance(v, str) else str(v) for v in value]
        return _MISSING
    if kind == "map":
        if isinstance(value, dict):
            return {
                str(k): v if isinstance(v, str) else canonical_json(v) for k, v in value.items()
            }
        return _MISSING
    if kind == "json":
        return canonical_json(value)
    raise ValueError(f"unknown field kind {kind}")


def is_missing(value: Any) -> bool:
    return value is _MISSING
