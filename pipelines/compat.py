"""Schema evolution rules: what a change may do without breaking readers of older data.

Allowed within a major version: adding a field that has a default, adding docs. Removing
or retyping a field, or adding one without a default, needs a new major topic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fields(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in record.get("fields", [])}


def _type_repr(ftype: Any) -> str:
    return json.dumps(ftype, sort_keys=True)


def compatibility_problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Breaking differences from ``old`` to ``new`` (empty when compatible)."""
    problems: list[str] = []
    name = ".".join(p for p in (new.get("namespace"), new.get("name", "?")) if p)
    if old.get("name") != new.get("name") or old.get("namespace") != new.get("namespace"):
        problems.append(f"{name}: record renamed from {old.get('namespace')}.{old.get('name')}")
    old_fields, new_fields = _fields(old), _fields(new)
    for fname, ofield in old_fields.items():
        nfield = new_fields.get(fname)
        if nfield is None:
            problems.append(f"{name}.{fname}: removed")
        elif _type_repr(ofield["type"]) != _type_repr(nfield["type"]):
            problems.append(
                f"{name}.{fname}: type changed from {_type_repr(ofield['type'])} "
                f"to {_type_repr(nfield['type'])}"
            )
    for fname, nfield in new_fields.items():
        if fname not in old_fields and "default" not in nfield:
            problems.append(f"{name}.{fname}: added without a default")
    old_names = [n for n in old_fields if n in new_fields]
    new_names = [n for n in new_fields if n in old_fields]
    if old_names != new_names:
        problems.append(f"{name}: existing fields reordered")
    return problems


def compare_dirs(old_dir: Path, new_dir: Path) -> list[str]:
    """Problems across every ``.avsc`` of a previous release and the current one."""
    problems: list[str] = []
    for old_path in sorted(old_dir.glob("*.avsc")):
        new_path = new_dir / old_path.name
        if not new_path.exists():
            problems.append(f"{old_path.stem}: schema file removed")
            continue
        old = json.loads(old_path.read_text(encoding="utf-8"))
        new = json.loads(new_path.read_text(encoding="utf-8"))
        problems.extend(compatibility_problems(old, new))
    return problems
