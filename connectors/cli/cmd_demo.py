"""``rwi-etl demo``: the main job end to end on embedded defaults."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime

from tqdm import tqdm

from pipelines.catalog import all_topics
from pipelines.ingest import BodyConverter
from pipelines.kafka_io import message_counts, produce_all
from pipelines.kafka_local import LocalKafka
from pipelines.samples import all_examples
from pipelines.settings import Settings
from pipelines.topics import ensure_topics

GARBAGE = (b"{not json", b'{"no_type": true}')


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the main job end to end on embedded defaults",
        description=(
            "Start the local Kafka broker (or use KAFKA_BOOTSTRAP_SERVERS), create the topics, "
            "publish one sample of every catalog event type in each dialect it exists in, plus "
            "an unknown type and malformed bodies (which go to the dead-letter topic), and "
            "print the messages per topic. A local broker the demo started is stopped at the "
            "end unless --keep-kafka is given."
        ),
    )
    parser.add_argument("--keep-kafka", action="store_true", help="leave the broker running")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    kafka = LocalKafka(settings)
    started = False
    if not kafka.external and not kafka.is_running():
        print(f"starting local Kafka {settings.kafka.version} on {settings.kafka.bootstrap} …")
        kafka.up(on_download=lambda line: None)
        started = True
    try:
        return asyncio.run(_publish_and_count(args, settings))
    finally:
        if started and not args.keep_kafka:
            print(kafka.down())


async def _publish_and_count(args: argparse.Namespace, settings: Settings) -> int:
    bootstrap = settings.kafka.bootstrap
    topics = all_topics(settings.topic_prefix)
    k = settings.kafka
    await ensure_topics(bootstrap, topics, k.partitions, k.replication_factor, k.retention_ms)
    before = await message_counts(bootstrap, topics)
    converter = BodyConverter(settings.pbx, settings.topic_prefix)
    bodies = [body for _, _, body in all_examples()]
    bodies.append(b'{"event_type": "brand_new_event", "call_id": "demo-1", "x": 1}')
    bodies.extend(GARBAGE)
    now = datetime.now(UTC)
    messages = [
        m
        for body in bodies
        for m in converter.convert(body, source="webhook", received_at=now).messages
    ]
    started = time.perf_counter()
    with tqdm(total=len(messages), desc="publishing", unit="msg", disable=args.json) as bar:
        await produce_all(bootstrap, messages, on_acked=bar.update)
    elapsed = time.perf_counter() - started
    after = await message_counts(bootstrap, topics)
    added = {t: after[t] - before[t] for t in topics}
    if args.json:
        print(
            json.dumps(
                {"bootstrap": bootstrap, "bodies": len(bodies), "added": added, "total": after},
                indent=2,
            )
        )
    else:
        print(
            f"\n{len(bodies)} bodies -> {len(messages)} messages in {elapsed:.2f}s to {bootstrap}"
        )
        print(f"{'topic':32} {'added':>7} {'total':>7}")
        for topic in topics:
            print(f"{topic:32} {added[topic]:7d} {after[topic]:7d}")
    return 0 if sum(added.values()) == len(messages) else 1
