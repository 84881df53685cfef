"""A custom Transport: push the registry's frames into a stream (e.g. for Server-Sent Events)."""

from __future__ import annotations

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from wsregistry import CloseCode, Registry


# --8<-- [start:transport]
class StreamTransport:
    """Hands each frame to a memory stream that another task forwards to the client.

    ``send`` waits while the stream's buffer is full (back-pressure), ``send_nowait``
    is the optional fast path, and ``close`` ends the stream (idempotent).
    """

    def __init__(self, stream: MemoryObjectSendStream[str | bytes]) -> None:
        self._stream = stream
        self.close_code: int | None = None

    async def send(self, data: str | bytes) -> None:
        await self._stream.send(data)  # raises ClosedResourceError/BrokenResourceError if gone

    def send_nowait(self, data: str | bytes) -> bool:
        try:
            self._stream.send_nowait(data)
        except anyio.WouldBlock:
            return False  # buffer full: the registry queues it and calls send() later
        return True

    async def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
        await self._stream.aclose()  # closing twice is harmless
        # --8<-- [end:transport]


# --8<-- [start:usage]
async def forward(frames: MemoryObjectReceiveStream[str | bytes], out: list[str | bytes]) -> None:
    """The client side: an SSE response would write each frame as an ``event:`` here."""
    async with frames:
        async for frame in frames:
            out.append(frame)


async def main() -> list[str | bytes]:
    received: list[str | bytes] = []
    async with anyio.create_task_group() as tg, Registry() as registry:
        send_stream, receive_stream = anyio.create_memory_object_stream[str | bytes](16)
        tg.start_soon(forward, receive_stream, received)
        transport = StreamTransport(send_stream)
        conn = await registry.connect(transport, key="dashboard")
        await registry.send("dashboard", {"cpu": 0.42})
        await conn.close(CloseCode.NORMAL)  # unregisters, then closes the stream
    # --8<-- [end:usage]
    assert transport.close_code == CloseCode.NORMAL
    return received  # ['{"cpu":0.42}']


if __name__ == "__main__":
    anyio.run(main)
