"""The ``Publisher`` protocol: hand messages to a broker and learn when they are safe.

An acknowledgement resolves only once the broker has every message of a batch (for
Kafka: acks=all from an idempotent producer). In-flight bytes are capped here, because
aiokafka has no memory bound of its own: over the cap a caller is refused (the webhook
answers 503) or waits (the WebSocket client stops reading, which pushes back on the PBX).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from pipelines.encode import OutgoingMessage
from pipelines.errors import BrokerError
from pipelines.ingest import DEFAULT_MAX_MESSAGE_BYTES


class PublishError(BrokerError):
    """A batch could not be made safe; the caller must not acknowledge it."""


class BrokerUnavailable(PublishError):
    """The broker did not acknowledge in time or refused; worth a retry later."""


class Overloaded(PublishError):
    """Accepting the batch would exceed the in-flight byte cap."""


class MessageTooLarge(PublishError):
    """A message exceeds the largest the broker client accepts: no retry can ever help.

    The converter dead-letters such events before they get here (it is given the
    publisher's ``max_message_bytes``), so this guards against a caller that did not.
    """

    retriable = False


class Publisher(Protocol):
    """Where the ingest service sends converted messages."""

    @property
    def ready(self) -> bool:
        """True when the broker is connected and the last deliveries succeeded."""
        ...

    @property
    def in_flight_bytes(self) -> int: ...

    @property
    def in_flight_messages(self) -> int: ...

    max_in_flight_bytes: int

    max_message_bytes: int
    """The largest message (key + value + headers) accepted; larger is :class:`MessageTooLarge`."""

    async def submit(
        self, messages: Sequence[OutgoingMessage], *, block: bool = False
    ) -> Awaitable[None]:
        """Enqueue ``messages``; the returned awaitable resolves once all are acknowledged.

        Raises :class:`Overloaded` over the cap unless ``block``, which waits for room, and
        :class:`MessageTooLarge` (before taking any) when a message exceeds
        ``max_message_bytes``.
        """
        ...

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Submit and wait for the broker's acknowledgement, bounded by the ack timeout."""
        ...

    async def close(self, timeout_s: float) -> None:
        """Wait (up to ``timeout_s``) for what is in flight, then disconnect."""
        ...


AckListener = Callable[[int, int, float, BaseException | None], None]
"""Called per finished message: (messages, bytes, seconds since submit, error or None)."""


Track = Callable[[asyncio.Future[object], int, int], None]
"""Called by :meth:`GatedPublisher._enqueue` per part handed over: (ack future, messages, bytes)."""


class GatedPublisher:
    """Shared logic of every publisher: the in-flight cap, ack waiting and health.

    Subclasses implement :meth:`_send`, which enqueues one message and returns a future
    resolved by the broker's acknowledgement, and may override :meth:`_enqueue` to hand
    over many messages at once.
    """

    def __init__(
        self,
        *,
        max_in_flight_bytes: int,
        ack_timeout_s: float,
        degraded_ack_timeout_s: float,
        on_ack: AckListener | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.max_in_flight_bytes = max_in_flight_bytes
        self.max_message_bytes = max_message_bytes
        self.ack_timeout_s = ack_timeout_s
        self.degraded_ack_timeout_s = degraded_ack_timeout_s
        self.on_ack = on_ack
        self._bytes = 0
        self._messages = 0
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._connected = False
        self._failing = False

    # -- state -----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._connected and not self._failing

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def in_flight_bytes(self) -> int:
        return self._bytes

    @property
    def in_flight_messages(self) -> int:
        return self._messages

    def _mark_failing(self, failing: bool) -> None:
        self._failing = failing

    # -- publishing ------------------------------------------------------------------

    async def _send(self, message: OutgoingMessage) -> asyncio.Future[object]:
        raise NotImplementedError

    async def _enqueue(
        self, messages: Sequence[OutgoingMessage], sizes: Sequence[int], track: Track
    ) -> None:
        """Hand ``messages`` over in order, calling ``track`` for each part as soon as the
        broker client holds it (so a failure part-way leaves the earlier parts counted)."""
        for message, size in zip(messages, sizes, strict=True):
            track(await self._send(message), 1, size)

    async def submit(
        self, messages: Sequence[OutgoingMessage], *, block: bool = False
    ) -> Awaitable[None]:
        if not self._connected:
            raise BrokerUnavailable("not connected to the broker")
        if not messages:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        sizes = [m.size for m in messages]
        largest = max(sizes)
        if largest > self.max_message_bytes:
            raise MessageTooLarge(f"a message of {largest} bytes exceeds the limit of "
                                  f"{self.max_message_bytes}")
        total = sum(sizes)
        await self._reserve(total, len(sizes), block)
        futures: list[asyncio.Future[object]] = []
        started = time.monotonic()
        handed = [0, 0]  # messages, bytes

        def track(future: asyncio.Future[object], count: int, size: int) -> None:
            handed[0] += count
            handed[1] += size
            future.add_done_callback(self._releaser(count, size, started))
            futures.append(future)

        try:
            await self._enqueue(messages, sizes, track)
        except BaseException as exc:
            self._release(total - handed[1], len(sizes) - handed[0])
            if isinstance(exc, PublishError | asyncio.CancelledError):
                raise
            if isinstance(exc, Exception):
                raise BrokerUnavailable(f"could not enqueue for the broker: {exc}") from exc
            raise
        if len(futures) == 1:
            return futures[0]  # type: ignore[return-value]
        return asyncio.gather(*futures)  # type: ignore[return-value]

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        timeout = self.ack_timeout_s if not self._failing else self.degraded_ack_timeout_s
        try:
            async with asyncio.timeout(timeout):
                ack = await self.submit(messages)
                await ack
        except TimeoutError as exc:
            self._mark_failing(True)
            raise BrokerUnavailable(f"no acknowledgement from the broker within {timeout}s") \
                from exc
        except PublishError:
            raise
        except Exception as exc:
            self._mark_failing(True)
            raise BrokerUnavailable(f"the broker refused the batch: {exc}") from exc

    async def close(self, timeout_s: float) -> None:
        """Wait (bounded) for deliveries in flight; subclasses then disconnect."""
        await self.wait_idle(timeout_s)

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is in flight; False when ``timeout_s`` passed first."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    # -- the cap ---------------------------------------------------------------------

    async def _reserve(self, size: int, count: int, block: bool) -> None:
        while self._bytes and self._bytes + size > self.max_in_flight_bytes:
            # A batch larger than the whole cap is let through alone, so it cannot wait forever.
            if not block:
                raise Overloaded(
                    f"{self._bytes} bytes in flight; {size} more would exceed the cap of "
                    f"{self.max_in_flight_bytes}"
                )
            self._room.clear()
            await self._room.wait()
        self._bytes += size
        self._messages += count
        self._idle.clear()

    def _release(self, size: int, count: int) -> None:
        self._bytes -= size
        self._messages -= count
        if self._bytes < self.max_in_flight_bytes:
            self._room.set()
        if self._messages <= 0:
            self._idle.set()

    def _releaser(
        self, count: int, size: int, started: float
    ) -> Callable[[asyncio.Future[object]], None]:
        def release(future: asyncio.Future[object]) -> None:
            error: BaseException | None
            error = asyncio.CancelledError() if future.cancelled() else future.exception()
            self._release(size, count)
            self._mark_failing(error is not None)
            if self.on_ack is not None:
                self.on_ack(count, size, time.monotonic() - started, error)

        return release
