"""``InMemoryPublisher``: the test double of the Kafka publisher, with the same cap and timeouts."""

from __future__ import annotations

import asyncio

from pipelines.encode import OutgoingMessage
from pipelines.ingest import DEFAULT_MAX_MESSAGE_BYTES

from .publisher import AckListener, GatedPublisher


class InMemoryPublisher(GatedPublisher):
    """Keeps acknowledged messages in a list; can hold, fail or refuse deliveries on demand.

    ``hold`` leaves acknowledgements pending until :meth:`release` (to fill the cap or to
    exercise the ack timeout); ``fail_with`` completes every delivery with that error;
    ``connected = False`` refuses like an unreachable broker.
    """

    def __init__(
        self,
        *,
        max_in_flight_bytes: int = 64 * 1024 * 1024,
        ack_timeout_s: float = 1.0,
        degraded_ack_timeout_s: float = 0.2,
        on_ack: AckListener | None = None,
        connected: bool = True,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(
            max_in_flight_bytes=max_in_flight_bytes,
            ack_timeout_s=ack_timeout_s,
            degraded_ack_timeout_s=degraded_ack_timeout_s,
            on_ack=on_ack,
            max_message_bytes=max_message_bytes,
        )
        self.messages: list[OutgoingMessage] = []
        self.hold = False
        self.fail_with: BaseException | None = None
        self._held: list[tuple[OutgoingMessage, asyncio.Future[object]]] = []
        self._connected = connected
        self.closed = False

    def set_connected(self, connected: bool) -> None:
        self._connected = connected

    def by_topic(self, topic: str) -> list[OutgoingMessage]:
        return [m for m in self.messages if m.topic == topic]

    async def _send(self, message: OutgoingMessage) -> asyncio.Future[object]:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if self.fail_with is not None:
            future.set_exception(self.fail_with)
        elif self.hold:
            self._held.append((message, future))
        else:
            self.messages.append(message)
            future.set_result(None)
        return future

    def release(self) -> int:
        """Acknowledge every held delivery; returns how many there were."""
        held, self._held = self._held, []
        for message, future in held:
            if not future.done():
                self.messages.append(message)
                future.set_result(None)
        return len(held)

    async def close(self, timeout_s: float) -> None:
        await self.wait_idle(timeout_s)
        self.closed = True
        self._connected = False
