"""The project's own Apache Kafka broker: one KRaft node (broker + controller) on loopback.

Jars come from Maven Central via ``mvn`` into ``<cache_dir>/kafka-<version>/lib``; state
(properties, data, pid, log) lives in ``<data_dir>/kafka`` so each data dir is its own broker.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import BrokerSetupError
from pipelines.settings import KafkaSettings, Settings
from pipelines.topics import probe_cluster

logger = logging.getLogger(__name__)

Which = Callable[[str], str | None]
OnDownload = Callable[[str], None]

_MAIN_CLASS = "kafka.Kafka"
_MARKER = ".complete"
_VERSION_LOGGED = re.compile(r"Kafka version: (\S+)")


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """What ``status`` found: is the bootstrap answering, which version, is it ours."""

    ready: bool
    bootstrap: str
    version: str | None
    pid: int | None
    managed: bool
    detail: str


class LocalKafka:
    """Fetch, start, stop and inspect the local broker described by ``settings``."""

    def __init__(self, settings: Settings, *, which: Which = shutil.which) -> None:
        self.settings = settings
        self.kafka = settings.kafka
        self._which = which
        self._proc: subprocess.Popen[bytes] | None = None
        self._java: str | None = None
        self.home = Path(settings.cache_dir).expanduser() / f"kafka-{self.kafka.version}"
        self.lib_dir = self.home / "lib"
        self.state_dir = Path(settings.data_dir).expanduser().resolve() / "kafka"
        self.log_dirs = self.state_dir / "data"
        self.properties_file = self.state_dir / "server.properties"
        self.pid_file = self.state_dir / "kafka.pid"
        self.version_file = self.state_dir / "kafka.version"
        self.log_file = self.state_dir / "kafka.log"

    @property
    def external(self) -> bool:
        return self.kafka.bootstrap_servers is not None

    def is_fetched(self) -> bool:
        """True when the jars for this version are complete in the cache."""
        return (self.lib_dir / _MARKER).is_file()

    def is_running(self) -> bool:
        """True when the pid we recorded is alive and is this data dir's Kafka."""
        return self._running_pid() is not None

    def fetch(self, on_download: OnDownload | None = None) -> Path:
        """Download Kafka and its runtime dependencies with ``mvn``; return the lib dir."""
        self._require_java()
        if self.is_fetched():
            return self.lib_dir
        mvn = self._require("mvn", "Apache Maven 3.6+ (e.g. `apt-get install maven`)")
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "pom.xml").write_text(render_pom(self.kafka), encoding="utf-8")
        cmd = [mvn, "-B", "-Dstyle.color=never", "dependency:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={self.lib_dir}"]
        logger.info("running %s in %s", " ".join(cmd), self.home)
        lines = _run_streaming(cmd, self.home, on_download)
        if lines is not None:
            raise BrokerSetupError(
                f"mvn could not assemble Kafka {self.kafka.version} "
                f"(is Maven Central reachable?):\n{tail(lines)}"
            )
        if not list(self.lib_dir.glob(f"kafka_*-{self.kafka.version}.jar")):
            raise BrokerSetupError(f"mvn finished but no Kafka jar is in {self.lib_dir}")
        (self.lib_dir / _MARKER).write_text(self.kafka.version + "\n", encoding="utf-8")
        return self.lib_dir

    def up(self, timeout_s: float = 60.0, on_download: OnDownload | None = None) -> BrokerStatus:
        """Start the broker unless it already runs; return once it answers or raise."""
        if self.external:
            return self.status(detail="external cluster (KAFKA_BOOTSTRAP_SERVERS); nothing started")
        pid = self._running_pid()
        if pid is not None:
            return self._wait_ready(pid, timeout_s, "already running")
        self._check_ports_free()
        java = self._require_java()
        self.fetch(on_download)
        self._prepare_state()
        started = time.monotonic()
        self._proc = self._spawn(java)
        self.pid_file.write_text(f"{self._proc.pid}\n", encoding="utf-8")
        self.version_file.write_text(self.kafka.version + "\n", encoding="utf-8")
        return self._wait_ready(self._proc.pid, timeout_s, "started", started)

    def down(self, timeout_s: float = 30.0) -> str:
        """Stop our broker (only the pid we recorded, verified as Kafka); idempotent."""
        if self.external:
            return f"using external cluster {self.kafka.bootstrap}; nothing to stop"
        pid = self._running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return "local Kafka is not running"
        try:
            os.kill(pid, signal.SIGTERM)
            if not self._wait_exit(pid, timeout_s):
                logger.warning("Kafka pid %d ignored SIGTERM for %.0fs; killing it", pid,
                               timeout_s)
                os.kill(pid, signal.SIGKILL)
                self._wait_exit(pid, 10.0)
        except ProcessLookupError:
            pass  # it exited on its own between the check and the signal
        self.pid_file.unlink(missing_ok=True)
        return f"local Kafka (pid {pid}) stopped"

    def status(self, timeout_s: float = 5.0, detail: str = "") -> BrokerStatus:
        """Probe the bootstrap address; for our own broker also report pid and version."""
        bootstrap = self.kafka.bootstrap
        ok, why = probe_cluster(bootstrap, timeout_s)
        if self.external:
            why = f"external cluster (KAFKA_BOOTSTRAP_SERVERS): {why}"
            return BrokerStatus(ok, bootstrap, None, None, False, detail or why)
        pid = self._running_pid()
        version = self._broker_version() if pid is not None else None
        if pid is None:
            why = "local Kafka is not running" + (
                f", though a broker not started here answers ({why})" if ok else "")
        return BrokerStatus(ok and pid is not None, bootstrap, version, pid, pid is not None,
                            detail or why)

    # -- internals --------------------------------------------------------------------

    def _require(self, name: str, hint: str) -> str:
        path = self._which(name)
        if path is None:
            raise BrokerSetupError(f"`{name}` not found on PATH; install {hint}")
        return path

    def _require_java(self) -> str:
        if self._java is not None:
            return self._java
        java = self._require("java", "a Java 17+ runtime (e.g. `apt-get install openjdk-17-jre`)")
        out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
        found = re.search(r'version "(\d+)', out.stderr + out.stdout)
        if found is None or int(found.group(1)) < 17:
            raise BrokerSetupError(f"Kafka {self.kafka.version} needs Java 17+; {java} is: "
                                   f"{(out.stderr or out.stdout).strip().splitlines()[:1]}")
        self._java = java
        return java

    def _check_ports_free(self) -> None:
        for port in (self.kafka.port, self.kafka.controller_port):
            if port_in_use(self.kafka.host, port):
                raise BrokerSetupError(
                    f"{self.kafka.host}:{port} is already in use by another process (not the "
                    f"broker of {self.state_dir}); stop it, or set RWI_KAFKA_PORT / "
                    "RWI_KAFKA_CONTROLLER_PORT, or point KAFKA_BOOTSTRAP_SERVERS at it"
                )

    def _prepare_state(self) -> None:
        self.log_dirs.mkdir(parents=True, exist_ok=True)
        (self.home / "log4j2.xml").write_text(LOG4J2_XML, encoding="utf-8")
        self.properties_file.write_text(
            render_server_properties(self.kafka, self.log_dirs), encoding="utf-8"
        )
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_suffix(".log.1"))
        # Format exactly once: meta.properties marks a formatted log dir, and formatting
        # again would mint a new cluster id and orphan the data already there.
        if not (self.log_dirs / "meta.properties").exists():
            self._format_storage()

    def _java_cmd(self, java: str, *args: str) -> list[str]:
        return [java, f"-Xmx{self.kafka.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.home / 'log4j2.xml'}",
                "-cp", f"{self.lib_dir}{os.sep}*", *args]

    def _format_storage(self) -> None:
        cluster_id = new_cluster_id()
        cmd = self._java_cmd(self._require_java(), "kafka.tools.StorageTool", "format",
                             "-t", cluster_id, "-c", str(self.properties_file))
        logger.info("formatting %s with cluster id %s", self.log_dirs, cluster_id)
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=180)
        if out.returncode != 0:
            raise BrokerSetupError(
                f"formatting Kafka storage in {self.log_dirs} failed:\n"
                f"{tail((out.stdout + out.stderr).splitlines())}"
            )

    def _spawn(self, java: str) -> subprocess.Popen[bytes]:
        cmd = self._java_cmd(java, _MAIN_CLASS, str(self.properties_file))
        logger.info("starting Kafka: %s", " ".join(cmd))
        with self.log_file.open("ab") as log:
            # A new session keeps the broker alive after the CLI exits and out of its Ctrl-C.
            return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    cwd=self.state_dir)

    def _wait_ready(self, pid: int, timeout_s: float, what: str,
                    started: float | None = None) -> BrokerStatus:
        t0 = time.monotonic() if started is None else started
        deadline = t0 + timeout_s
        why = "no answer yet"
        while time.monotonic() < deadline:
            if not self._alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise BrokerSetupError(f"Kafka exited during start-up; end of {self.log_file}:\n"
                                       f"{self._log_tail()}")
            ok, why = probe_cluster(self.kafka.bootstrap, 5.0)
            if ok:
                took = "" if started is None else f"; ready after {time.monotonic() - t0:.1f}s"
                return self.status(detail=what + took)
            time.sleep(0.3)
        raise BrokerSetupError(f"Kafka (pid {pid}) not ready after {timeout_s:g}s ({why}); it "
                               f"may still be starting (`rwi-etl kafka down` stops it); "
                               f"end of {self.log_file}:\n{self._log_tail()}")

    def _alive(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        return self._is_our_broker(pid)

    def _running_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if self._is_our_broker(pid) else None

    def _is_our_broker(self, pid: int) -> bool:
        argv = process_argv(pid)
        return (bool(argv) and Path(argv[0]).name == "java" and _MAIN_CLASS in argv
                and str(self.properties_file) in argv)

    def _wait_exit(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                if self._proc.poll() is not None:
                    return True
            elif not self._is_our_broker(pid):
                return True
            time.sleep(0.2)
        return False

    def _broker_version(self) -> str | None:
        # The broker itself logs "Kafka version: X" while starting; trust that over our note.
        try:
            with self.log_file.open("rb") as log:
                head = log.read(4 << 20).decode(errors="replace")
        except FileNotFoundError:
            head = ""
        logged = _VERSION_LOGGED.search(head)
        return logged.group(1) if logged else _read(self.version_file)

    def _log_tail(self) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - (64 << 10)))
                return tail(log.read().decode(errors="replace").splitlines())
        except FileNotFoundError:
            return tail([])


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None


def _run_streaming(cmd: list[str], cwd: Path, on_download: OnDownload | None) -> list[str] | None:
    """Run ``cmd``; report each downloaded artifact; return its output lines on failure."""
    lines: list[str] = []
    with subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if on_download is not None and "Downloaded from" in line:
                on_download(line.rsplit("/", 1)[-1].split(" ")[0])
    return None if proc.returncode == 0 else lines


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):  # a leading dash reads as an option on command lines
            return cid


def port_in_use(host: str, port: int) -> bool:
    """True when nothing can bind ``host:port`` (someone listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def process_argv(pid: int) -> list[str]:
    """The command line of ``pid`` (empty when it is gone or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


_LOG4J_VERSION = "2.25.5"
_DEPENDENCY_PLUGIN_VERSION = "3.8.1"


def render_pom(kafka: KafkaSettings) -> str:
    """A throwaway pom whose runtime dependencies are exactly the broker's classpath."""
    log4j = "org.apache.logging.log4j"
    extra = "".join(
        f"<dependency><groupId>{log4j}</groupId><artifactId>{name}</artifactId>"
        f"<version>{_LOG4J_VERSION}</version></dependency>\n    "
        for name in ("log4j-core", "log4j-slf4j-impl")  # Kafka's slf4j is 1.7.x
    )
    # The published poms leak test frameworks into runtime scope; the broker never loads them.
    excluded = "".join(
        f"<exclusion><groupId>{group}</groupId><artifactId>*</artifactId></exclusion>"
        for group in ("org.junit.jupiter", "org.mockito")
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.rwi-etl</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{kafka.version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{kafka.scala_version}</artifactId>
      <version>{kafka.version}</version>
      <exclusions>{excluded}</exclusions>
    </dependency>
    {extra.rstrip()}
  </dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId>
    <artifactId>maven-dependency-plugin</artifactId>
    <version>{_DEPENDENCY_PLUGIN_VERSION}</version>
  </plugin></plugins></build>
</project>
"""


def render_server_properties(kafka: KafkaSettings, log_dirs: Path) -> str:
    """server.properties for a single combined broker+controller KRaft node."""
    host, port, cport = kafka.host, kafka.port, kafka.controller_port
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # A static voter set (not a formatted dynamic quorum) lets ports change between runs.
        "controller.quorum.voters": f"1@{host}:{cport}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dirs),
        "num.partitions": str(kafka.partitions),
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        # Few internal partitions: a one-node dev broker creates them on first use, and 50
        # each would make the first consumer group or transaction wait for seconds.
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "log.retention.ms": str(kafka.retention_ms),
    }
    return "".join(f"{key}={value}\n" for key, value in props.items())


LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="STDOUT"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="kafka.authorizer.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
  </Loggers>
</Configuration>
"""


def tail(lines: list[str], count: int = 30) -> str:
    """The last ``count`` lines, indented, for error messages."""
    return "\n".join(f"  {line}" for line in lines[-count:]) or "  (no output)"
