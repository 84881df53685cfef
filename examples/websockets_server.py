"""A plain ``websockets`` server (no web framework) with the registry behind it.

Clients authenticate with an ``Authorization: Bearer <token>`` header (native
clients can set headers; browsers cannot, see the Starlette example). Then:

* ``{"to": "bob", "text": "hi"}`` goes to every connection of bob;
* ``{"text": "hi all"}`` goes to everyone else.

Run it::

    python examples/websockets_server.py 8765
    python -m websockets ws://127.0.0.1:8765   # refused (403): no token

and connect with a header, e.g. from Python::

    from websockets.asyncio.client import connect
    async with connect("ws://127.0.0.1:8765",
                       additional_headers={"Authorization": "Bearer alice-token"}) as ws:
        await ws.send('{"to": "bob", "text": "hi"}')
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from websockets.asyncio.server import Server, ServerConnection

from wsregistry import Connection, Registry
from wsregistry.adapters.websockets import Identity, serve

TOKENS = {"alice-token": "alice", "bob-token": "bob", "carol-token": "carol"}
"""A stand-in for your user store: bearer token → user id."""


async def authenticate(connection: ServerConnection) -> Identity | None:
    """Admit a connection whose bearer token is known; runs before the handshake completes."""
    if connection.request is None:
        return None
    scheme, _, token = connection.request.headers.get("Authorization", "").partition(" ")
    user = TOKENS.get(token) if scheme.lower() == "bearer" else None
    return Identity(key=user) if user else None


@asynccontextmanager
async def run_server(
    registry: Registry, *, host: str = "127.0.0.1", port: int = 8765
) -> AsyncIterator[Server]:
    """Serve until the block ends (port 0: any free port; see ``server.sockets``)."""

    async def on_message(conn: Connection, data: str | bytes) -> None:
        try:
            message = json.loads(data)
            text = str(message["text"])
        except (ValueError, KeyError, TypeError):
            await conn.send({"error": 'send {"text": ...} or {"to": user, "text": ...}'})
            return
        if "to" in message:
            await registry.send(str(message["to"]), {"from": conn.key, "text": text})
        else:
            await registry.broadcast({"from": conn.key, "text": text}, exclude=conn)

    async with serve(
        registry, host, port, authenticate=authenticate, on_message=on_message
    ) as server:
        yield server


async def main(port: int) -> None:
    async with Registry() as registry, run_server(registry, port=port) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"listening on ws://127.0.0.1:{bound} (Ctrl+C to stop)", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    try:
        anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8765)
    except KeyboardInterrupt:  # Ctrl+C: main was cancelled, connections closed with 1001
        print("stopped", flush=True)
