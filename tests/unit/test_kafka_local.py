"""The local broker's plumbing without a broker: generated files, tool checks, ports, pids."""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.cli import cmd_kafka
from pipelines.errors import BrokerSetupError
from pipelines.kafka_local import (
    LocalKafka,
    new_cluster_id,
    port_in_use,
    process_argv,
    render_pom,
    render_server_properties,
)
from pipelines.settings import KafkaSettings, Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    kafka = KafkaSettings(port=_free_port(), controller_port=_free_port(), partitions=4)
    return Settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", kafka=kafka)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def test_server_properties_describe_one_kraft_node(tmp_path: Path) -> None:
    kafka = KafkaSettings(port=29092, controller_port=29093, partitions=6, retention_ms=1234)

    text = render_server_properties(kafka, tmp_path / "logs")
    props = dict(line.split("=", 1) for line in text.splitlines())

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "logs")
    assert props["num.partitions"] == "6"
    assert props["log.retention.ms"] == "1234"
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr"):
        assert props[key] == "1"


def test_pom_asks_for_kafka_and_a_log4j2_backend() -> None:
    root = ET.fromstring(render_pom(KafkaSettings(version="4.4.0")))
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    deps = {
        (d.findtext("m:groupId", namespaces=ns), d.findtext("m:artifactId", namespaces=ns))
        : d.findtext("m:version", namespaces=ns)
        for d in root.iterfind("m:dependencies/m:dependency", ns)
    }
    assert deps[("org.apache.kafka", "kafka_2.13")] == "4.4.0"
    assert ("org.apache.logging.log4j", "log4j-slf4j-impl") in deps
    assert ("org.apache.logging.log4j", "log4j-core") in deps


def test_cluster_id_is_16_bytes_of_url_safe_base64() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cid in ids:
        assert len(cid) == 22 and not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_missing_java_is_a_setup_error(settings: Settings) -> None:
    kafka = LocalKafka(settings, which=lambda name: None)
    with pytest.raises(BrokerSetupError, match=r"`java` not found.*Java 17"):
        kafka.fetch()
    with pytest.raises(BrokerSetupError, match="`java` not found"):
        kafka.up()


def test_missing_mvn_is_a_setup_error(settings: Settings) -> None:
    java = shutil.which("java")
    assert java is not None, "the suite needs Java 17+ on PATH"
    kafka = LocalKafka(settings, which=lambda name: java if name == "java" else None)
    with pytest.raises(BrokerSetupError, match=r"`mvn` not found.*Maven"):
        kafka.fetch()


def test_port_in_use_sees_a_loopback_listener(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    assert port_in_use("127.0.0.1", port)
    listener.close()
    assert not port_in_use("127.0.0.1", port)


@pytest.mark.parametrize("which_port", ["port", "controller_port"])
def test_up_refuses_a_port_taken_by_someone_else(
    settings: Settings, listener: socket.socket, which_port: str
) -> None:
    port = listener.getsockname()[1]
    kafka = settings.kafka.model_copy(update={which_port: port})
    local = LocalKafka(settings.model_copy(update={"kafka": kafka}))
    with pytest.raises(BrokerSetupError, match=f"127.0.0.1:{port} is already in use"):
        local.up()
    assert not local.pid_file.exists()


def test_down_never_signals_a_pid_that_is_not_our_broker(settings: Settings) -> None:
    local = LocalKafka(settings)
    local.state_dir.mkdir(parents=True)
    local.pid_file.write_text(f"{os.getpid()}\n")  # this test process: alive, not Kafka

    assert not local.is_running()
    assert local.down() == "local Kafka is not running"
    assert not local.pid_file.exists()
    assert local.down() == "local Kafka is not running"


def test_process_argv_of_this_process_and_of_a_missing_one() -> None:
    assert any("python" in part or "pytest" in part for part in process_argv(os.getpid()))
    assert process_argv(2**22 + 17) == []


def test_external_cluster_is_never_started_or_stopped(settings: Settings) -> None:
    bootstrap = f"127.0.0.1:{_free_port()}"
    kafka = settings.kafka.model_copy(update={"bootstrap_servers": bootstrap})
    local = LocalKafka(settings.model_copy(update={"kafka": kafka}))

    assert "nothing to stop" in local.down()
    status = local.up(timeout_s=1.0)
    assert (status.ready, status.managed, status.bootstrap) == (False, False, bootstrap)
    assert not local.state_dir.exists()


def _run_cli(argv: list[str], settings: Settings) -> int:
    parser = argparse.ArgumentParser()
    cmd_kafka.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args, settings))


def test_status_json_exits_non_zero_when_not_ready(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run_cli(["kafka", "status", "--json", "--timeout", "1"], settings)

    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out["ready"] is False
    assert out["bootstrap"] == f"127.0.0.1:{settings.kafka.port}"
    assert set(out) == {"ready", "bootstrap", "version", "pid", "managed", "detail"}


def test_down_via_cli_is_idempotent(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run_cli(["kafka", "down"], settings) == 0
    assert "not running" in capsys.readouterr().out
