"""Anchor 1, the reference limit: a plain ``websockets`` server and ``broadcast()``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from benchmarks.servers.base import Options, user_of
from benchmarks.wire import Message, dumps

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection


class RawWebsockets:
    """``dict[user, connection]``; ``broadcast()`` serialises once and never waits."""

    def __init__(self) -> None:
        self.port = 0
        self.conns: dict[str, ServerConnection] = {}

    async def handler(self, ws: ServerConnection) -> None:
        user = user_of(ws.request.path if ws.request else "")
        self.conns[user] = ws
        try:
            await ws.wait_closed()
        finally:
            if self.conns.get(user) is ws:
                del self.conns[user]

    def count(self) -> int:
        return len(self.conns)

    def users(self) -> list[str]:
        return list(self.conns)

    async def broadcast(self, message: Message) -> None:
        from websockets.asyncio.server import broadcast

        broadcast(self.conns.values(), dumps(message))
        await asyncio.sleep(0)  # let the loop write and read between messages, as an app would

    async def send(self, user: str, message: Message) -> None:
        await self.conns[user].send(dumps(message))

    def stats(self) -> dict[str, Any]:
        return {}


@asynccontextmanager
async def running(options: Options) -> AsyncIterator[RawWebsockets]:
    from websockets.asyncio.server import serve

    if options.backend != "memory":
        raise ValueError("the raw websockets anchor runs in one process only")
    app = RawWebsockets()
    async with serve(app.handler, "127.0.0.1", 0, backlog=4096) as server:
        app.port = next(iter(server.sockets)).getsockname()[1]
        yield app
