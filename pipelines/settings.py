"""Settings: read once at the entry point from a TOML file and the environment.

Precedence, lowest first: built-in defaults, the TOML file, environment variables.
No other module reads ``os.environ``; the CLI builds one ``Settings`` and passes it down.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipelines.errors import ConfigError

DEFAULT_KAFKA_PORT = 19092


class KafkaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap_servers: str | None = None
    """An existing cluster; when unset, the project's own local broker is used."""
    version: str = "4.4.0"
    scala_version: str = "2.13"
    host: str = "127.0.0.1"
    port: int = DEFAULT_KAFKA_PORT
    controller_port: int = DEFAULT_KAFKA_PORT + 1
    partitions: int = 3
    replication_factor: int = 1
    retention_ms: int = 7 * 24 * 3600 * 1000
    heap: str = "512m"

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or f"{self.host}:{self.port}"


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = "127.0.0.1:8088"
    path: str = "/rwi-events"
    token: str | None = None
    header: str = "Authorization"
    max_body_bytes: int = 1024 * 1024


class WebSocketSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    token: str | None = None
    token_in_query: bool = False
    contexts: list[str] = Field(default_factory=list)
    events: list[str] = Field(default_factory=list)
    ping_interval_s: float = 20.0
    max_frame_bytes: int = 16 * 1024 * 1024


class IngestSettings(BaseModel):
    """The ``rwi-etl ingest`` service: acknowledgement policy, producer tuning, TLS, reconnects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ack_timeout_s: float = 4.0
    """Longest wait for the broker's ack before answering 503 (RustPBX gives up after 5 s)."""
    degraded_ack_timeout_s: float = 0.5
    """The same wait while the broker is known to be failing, so the PBX is not held up."""
    max_in_flight_bytes: int = 64 * 1024 * 1024
    """Bytes handed to the producer and not yet acknowledged; above it the webhook answers 503."""
    retry_after_s: int = 1
    compression: str = "auto"
    """auto (zstd, else lz4, with cramjam; else gzip), zstd, lz4, snappy, gzip or none."""
    linger_ms: int = 0
    max_batch_bytes: int = 512 * 1024
    request_timeout_ms: int = 30_000
    drain_timeout_s: float = 30.0
    ensure_topics: bool = True
    tls_cert_file: Path | None = None
    """PEM certificate (chain) for the webhook listener; with ``tls_key_file`` it serves HTTPS."""
    tls_key_file: Path | None = None
    ws_ca_file: Path | None = None
    """CA bundle to trust for ``wss://`` PBX endpoints (the system store otherwise)."""
    ws_resume: bool = True
    """Send ``session.resume`` on every connect, so events cached while away are replayed."""
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    ping_timeout_s: float = 20.0
    access_log: bool = False
    restore_identity_messages: int = Field(default=100_000, ge=0)
    """Messages per partition read back at start to restore event-id numbering (0 = none)."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pbx: str = "default"
    topic_prefix: str = "rwi"
    data_dir: Path = Path("data")
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "rwi-etl")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    websocket: WebSocketSettings = Field(default_factory=WebSocketSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)


# Environment variable -> dotted settings path.
_ENV_MAP: dict[str, str] = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka.bootstrap_servers",
    "RWI_TOPIC_PREFIX": "topic_prefix",
    "RWI_DATA_DIR": "data_dir",
    "RWI_CACHE_DIR": "cache_dir",
    "RWI_PBX": "pbx",
    "RWI_KAFKA_PORT": "kafka.port",
    "RWI_KAFKA_CONTROLLER_PORT": "kafka.controller_port",
    "RWI_KAFKA_VERSION": "kafka.version",
    "RWI_WEBHOOK_TOKEN": "webhook.token",
    "RWI_WS_TOKEN": "websocket.token",
}


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = target
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build settings from defaults, an optional TOML file and the environment (env wins)."""
    raw: dict[str, Any] = {}
    if config_file is not None:
        try:
            raw = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {config_file}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from exc
    env = os.environ if environ is None else environ
    for name, dotted in _ENV_MAP.items():
        value = env.get(name)
        if value:
            _set_dotted(raw, dotted, value)
    try:
        return Settings.model_validate(raw)
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc
