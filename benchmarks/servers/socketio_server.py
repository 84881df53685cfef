"""Anchor 3: python-socketio ``AsyncServer`` on uvicorn (ASGI), ``AsyncRedisManager`` for Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from benchmarks.servers._uvicorn import uvicorn_serving
from benchmarks.servers.base import Options, user_of
from benchmarks.wire import Message


class SocketIO:
    """Emit to all; emit to one user's sid."""

    def __init__(self, options: Options) -> None:
        import socketio

        manager = None
        if options.backend == "redis":
            manager = socketio.AsyncRedisManager(options.redis_url, channel=options.channel)
        self.sio = socketio.AsyncServer(
            async_mode="asgi", client_manager=manager, logger=False, engineio_logger=False
        )
        self.sio.on("connect", self.on_connect)
        self.sio.on("disconnect", self.on_disconnect)
        self.asgi = socketio.ASGIApp(self.sio)
        self.port = 0
        self.sids: dict[str, str] = {}
        self.user_of_sid: dict[str, str] = {}

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        user = user_of(environ.get("QUERY_STRING", ""))
        self.sids[user] = sid
        self.user_of_sid[sid] = user

    async def on_disconnect(self, sid: str, *_: Any) -> None:
        user = self.user_of_sid.pop(sid, None)
        if user is not None and self.sids.get(user) == sid:
            del self.sids[user]

    def count(self) -> int:
        return len(self.sids)

    def users(self) -> list[str]:
        return list(self.sids)

    async def broadcast(self, message: Message) -> None:
        await self.sio.emit("m", message)

    async def send(self, user: str, message: Message) -> None:
        await self.sio.emit("m", message, to=self.sids[user])

    def stats(self) -> dict[str, Any]:
        return {}


@asynccontextmanager
async def running(options: Options) -> AsyncIterator[SocketIO]:
    app = SocketIO(options)
    async with uvicorn_serving(app.asgi) as port:
        app.port = port
        yield app
