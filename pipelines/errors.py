"""The project's error hierarchy: one root, each error says whether retrying can help."""

from __future__ import annotations


class RwiEtlError(Exception):
    """Root of every error the project raises on purpose."""

    retriable: bool = False
    exit_code: int = 1


class ConfigError(RwiEtlError):
    """The configuration is missing or invalid; fix it and run again."""

    exit_code = 2


class ParseError(RwiEtlError):
    """A frame or body could not be turned into an event; it goes to the dead-letter topic."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class SchemaError(RwiEtlError):
    """A value does not match its Avro schema, or a fingerprint is unknown."""


class BrokerError(RwiEtlError):
    """Kafka could not be reached or refused an operation; usually worth a retry."""

    retriable = True
    exit_code = 3


class BrokerSetupError(RwiEtlError):
    """The local broker cannot be assembled or started (no java, no mvn, port taken...)."""

    exit_code = 3
