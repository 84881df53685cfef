"""websockets' own ``serve`` with a RegistryHandler, for full control of the server."""

from __future__ import annotations

import anyio
from anyio.abc import TaskStatus
from websockets.asyncio.server import ServerConnection, serve

from wsregistry import Connection, Registry
from wsregistry.adapters.websockets import Identity, RegistryHandler, RegistryServerConnection


async def authenticate(connection: ServerConnection) -> Identity | None:
    request = connection.request
    user = request.headers.get("X-User") if request is not None else None  # trust your proxy
    return Identity(key=user) if user else None


async def on_connect(conn: Connection) -> None:
    await conn.send({"type": "welcome", "user": conn.key})


async def main(
    *, port: int = 8765, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED
) -> None:
    async with Registry() as registry:
        # --8<-- [start:handler]
        handler = RegistryHandler(registry, authenticate=authenticate, on_connect=on_connect)
        async with serve(
            handler,
            "127.0.0.1",
            port,
            process_request=handler.process_request,  # refuse in the HTTP handshake
            create_connection=RegistryServerConnection,  # unregister once the server closes
            max_size=64 * 1024,
        ) as server:
            task_status.started(next(iter(server.sockets)).getsockname()[1])
            try:
                await server.serve_forever()
            finally:  # deliver what is queued and close with 1001 before the server closes
                with anyio.CancelScope(shield=True):
                    await registry.close_connections()
        # --8<-- [end:handler]


if __name__ == "__main__":
    anyio.run(main)
