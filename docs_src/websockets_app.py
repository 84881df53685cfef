"""A plain ``websockets`` server: bearer-token auth in the handshake, echo to everyone else."""

from __future__ import annotations

import anyio
from anyio.abc import TaskStatus
from websockets.asyncio.server import ServerConnection

from wsregistry import Connection, Registry
from wsregistry.adapters.websockets import Identity, serve

TOKENS = {"alice-token": "alice", "bob-token": "bob"}  # stands in for your user store


async def authenticate(connection: ServerConnection) -> Identity | None:
    request = connection.request  # the HTTP handshake request: path and headers
    header = request.headers.get("Authorization", "") if request is not None else ""
    user = TOKENS.get(header.removeprefix("Bearer "))
    return Identity(key=user) if user else None  # None: HTTP 403, never accepted


async def main(
    *, port: int = 8765, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED
) -> None:
    async with Registry() as registry:

        async def on_connect(conn: Connection) -> None:
            await conn.send({"type": "welcome", "user": conn.key})  # registered from now on

        async def on_message(conn: Connection, data: str | bytes) -> None:
            await registry.broadcast(data, exclude=conn)  # relay to everyone else

        async with serve(
            registry,
            "127.0.0.1",
            port,
            authenticate=authenticate,
            on_connect=on_connect,
            on_message=on_message,
            max_message_size=64 * 1024,  # also the server's max_size: 1009 above it
            ping_interval=20,  # protocol pings; no pong within ping_timeout closes 1011
            ping_timeout=20,
        ) as server:
            task_status.started(next(iter(server.sockets)).getsockname()[1])
            await server.serve_forever()  # until cancelled: then 1001 for everyone


if __name__ == "__main__":
    anyio.run(main)
