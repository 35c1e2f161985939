"""Service logging: secrets masked in every record, optional JSON lines, no broker log storms."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime

MASK = "***"


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner`` (text or JSON), then masks every configured secret."""

    def __init__(self, secrets: Iterable[str], inner: logging.Formatter) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (and exc when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class RateLimitFilter(logging.Filter):
    """Passes one record per distinct message every ``interval_s``; counts the rest.

    aiokafka logs every failed reconnect (every ``retry_backoff_ms``) at ERROR; while the
    broker is down that is thousands of identical lines a minute.
    """

    def __init__(self, prefix: str = "aiokafka", interval_s: float = 10.0) -> None:
        super().__init__()
        self.prefix = prefix
        self.interval_s = interval_s
        self._last: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefix):
            return True
        key = f"{record.name}:{record.msg}"
        now = time.monotonic()
        seen = self._last.get(key)
        if seen is not None and now - seen[0] < self.interval_s:
            self._last[key] = (seen[0], seen[1] + 1)
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} (and {seen[1]} more like it)"
        self._last[key] = (now, 0)
        if len(self._last) > 1000:
            self._last.clear()
        return True


def configure_logging(secrets: Iterable[str], json_lines: bool = False) -> None:
    """Mask ``secrets`` on every root handler and calm aiokafka's reconnect noise."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO)
    secrets = list(secrets)
    for handler in root.handlers:
        current = handler.formatter
        if isinstance(current, RedactingFormatter):
            current = current.inner
        inner = JsonFormatter() if json_lines else (
            current or logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setFormatter(RedactingFormatter(secrets, inner))
        if not any(isinstance(f, RateLimitFilter) for f in handler.filters):
            handler.addFilter(RateLimitFilter())
