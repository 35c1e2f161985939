"""The long-running ingest service: RustPBX webhook and WebSocket into Kafka."""

from .auth import TokenAuth
from .kafka_publisher import KafkaPublisher
from .memory import InMemoryPublisher
from .metrics import Metrics
from .publisher import BrokerUnavailable, Overloaded, Publisher, PublishError
from .service import Channels, IngestService, parse_listen
from .webhook import WebhookConfig, WebhookHandler, build_app
from .wsclient import WsConfig, WsListener

__all__ = [
    "BrokerUnavailable",
    "Channels",
    "InMemoryPublisher",
    "IngestService",
    "KafkaPublisher",
    "Metrics",
    "Overloaded",
    "PublishError",
    "Publisher",
    "TokenAuth",
    "WebhookConfig",
    "WebhookHandler",
    "WsConfig",
    "WsListener",
    "build_app",
    "parse_listen",
]
