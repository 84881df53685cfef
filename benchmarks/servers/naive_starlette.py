"""Anchor 2: the pattern from countless tutorials, on Starlette and uvicorn.

``dict[user_id, WebSocket]`` and ``for ws in ...: await ws.send_json(msg)``:
serialises once per connection and waits on every peer in turn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from benchmarks.servers._uvicorn import uvicorn_serving
from benchmarks.servers.base import Options
from benchmarks.wire import Message

if TYPE_CHECKING:
    from starlette.websockets import WebSocket


class NaiveStarlette:
    """The naive connection manager."""

    def __init__(self) -> None:
        self.port = 0
        self.conns: dict[str, WebSocket] = {}

    async def endpoint(self, ws: WebSocket) -> None:
        from starlette.websockets import WebSocketDisconnect

        user = ws.query_params["user"]
        await ws.accept()
        self.conns[user] = ws
        try:
            while True:
                await ws.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            if self.conns.get(user) is ws:
                del self.conns[user]

    def count(self) -> int:
        return len(self.conns)

    def users(self) -> list[str]:
        return list(self.conns)

    async def broadcast(self, message: Message) -> None:
        for ws in list(self.conns.values()):
            await ws.send_json(message)

    async def send(self, user: str, message: Message) -> None:
        await self.conns[user].send_json(message)

    def stats(self) -> dict[str, Any]:
        return {}


@asynccontextmanager
async def running(options: Options) -> AsyncIterator[NaiveStarlette]:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    if options.backend != "memory":
        raise ValueError("the naive pattern runs in one process only")
    app = NaiveStarlette()
    asgi = Starlette(routes=[WebSocketRoute("/", app.endpoint)])
    async with uvicorn_serving(asgi) as port:
        app.port = port
        yield app
