"""``rwi-etl catalog``: every event type with its category, topic and schema."""

from __future__ import annotations

import argparse
import json

from pipelines import avro
from pipelines.catalog import CATALOG, UNKNOWN, Dialect, topic_for, types_in
from pipelines.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "catalog",
        help="list every RWI event type with its category, topic and Avro schema",
        description=(
            "Print the event catalog: each event type RustPBX has sent (protocol 1.0 reference, "
            "today's server, the contact-centre addon), the category and Kafka topic it lands "
            "in, the key field, and the Avro schema (full name and CRC-64-AVRO fingerprint). "
            "Types not listed land in the 'unknown' category with every field kept."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print a JSON array (for scripts)")
    parser.add_argument(
        "--dialect",
        choices=[d.value for d in Dialect],
        help="only the types a server of this dialect sends",
    )
    parser.set_defaults(handler=run)


def catalog_rows(topic_prefix: str, dialect: str | None = None) -> list[dict[str, object]]:
    """The catalog as plain rows, the ``unknown`` bucket last."""
    wanted = set(types_in(Dialect(dialect))) if dialect else None
    specs = [s for s in CATALOG.values() if wanted is None or s.event_type in wanted]
    rows: list[dict[str, object]] = []
    for spec in [*specs, UNKNOWN]:
        schema = avro.load(spec.schema)
        rows.append(
            {
                "event_type": spec.event_type if spec is not UNKNOWN else "*",
                "category": spec.category,
                "topic": topic_for(spec.category, topic_prefix),
                "schema": spec.schema,
                "fingerprint": schema.fingerprint_hex,
                "key_field": spec.key_field,
                "dispatch": spec.dispatch.value,
                "dialects": list(spec.dialects),
                "in_v1_0": spec.in_v1_0,
                "in_current_core": spec.in_current,
                "cc_addon": spec.cc_addon,
                "notes": spec.notes,
            }
        )
    return rows


def run(args: argparse.Namespace, settings: Settings) -> int:
    rows = catalog_rows(settings.topic_prefix, args.dialect)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'event_type':42} {'category':11} {'topic':24} {'dialects':16} schema")
    for row in rows:
        dialects = ",".join(row["dialects"]) if isinstance(row["dialects"], list) else ""
        print(
            f"{row['event_type']!s:42} {row['category']!s:11} {row['topic']!s:24} "
            f"{dialects:16} {row['schema']}"
        )
    print(f"\n{len(rows) - 1} known event types; any other type lands in the 'unknown' category.")
    return 0
