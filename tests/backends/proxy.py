"""TCP proxies for fault injection: deaf subscription links, slow links.

``freeze_subscribers()`` stops forwarding server-to-client bytes on every
connection that has sent a SUBSCRIBE: the socket stays open, Redis still counts
the subscriber, but nothing arrives - a listener that is connected but deaf.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from typing_extensions import Self


class _Pair:
    def __init__(self) -> None:
        self.subscriber = False
        self.frozen = False
        self.writers: list[asyncio.StreamWriter] = []


class _Proxy:
    """A loopback TCP listener in front of ``target_port``; subclasses pump the bytes."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class DeafeningProxy(_Proxy):
    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self._pairs: list[_Pair] = []

    def freeze_subscribers(self) -> int:
        """Go deaf on every current subscription connection; returns how many."""
        count = 0
        for pair in self._pairs:
            if pair.subscriber and not pair.frozen:
                pair.frozen = True
                count += 1
        return count

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        pair = _Pair()
        pair.writers = [writer, up_writer]
        self._writers += pair.writers
        self._pairs.append(pair)
        for source, sink, upstream in ((reader, up_writer, True), (up_reader, writer, False)):
            self._spawn(self._pump(pair, source, sink, upstream=upstream))

    async def _pump(
        self,
        pair: _Pair,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        try:
            while data := await source.read(65536):
                if upstream and b"SUBSCRIBE" in data:
                    pair.subscriber = True
                if not upstream and pair.frozen:
                    continue  # swallow: the client hears nothing
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            for writer in pair.writers:
                with contextlib.suppress(Exception):
                    writer.close()


class SlowLinkProxy(_Proxy):
    """A loopback TCP proxy that delays bytes by ``delay`` seconds in each direction.

    With ``subscribers_only`` (the default) only connections that sent a
    ``SUBSCRIBE`` are slowed (from that chunk on): a slow pub/sub link while
    commands stay fast. Otherwise every connection is slowed. Order is kept; a
    chunk is forwarded ``delay`` seconds after it was read.
    """

    def __init__(self, target_port: int, delay: float, *, subscribers_only: bool = True) -> None:
        super().__init__(target_port)
        self.delay = delay
        self.subscribers_only = subscribers_only

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        slow = [not self.subscribers_only]
        for source, sink, upstream in ((reader, up_writer, True), (up_reader, writer, False)):
            queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
            self._spawn(self._read(source, queue, slow, upstream=upstream))
            self._spawn(self._write(queue, sink, (writer, up_writer)))

    async def _read(
        self,
        source: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        slow: list[bool],
        *,
        upstream: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await source.read(65536):
                if upstream and b"SUBSCRIBE" in data.upper():
                    slow[0] = True
                queue.put_nowait((loop.time() + (self.delay if slow[0] else 0.0), data))
        except (ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait(None)

    async def _write(
        self,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        sink: asyncio.StreamWriter,
        writers: tuple[asyncio.StreamWriter, ...],
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            for writer in writers:
                with contextlib.suppress(Exception):
                    writer.close()
