"""A Starlette application: authenticated WebSockets plus HTTP routes that push to them.

* ``/ws?token=...``: the adapter's ``authenticate`` hook admits known tokens and
  puts the user in their groups; a text message is relayed to everyone else.
* ``POST /notify/{user}``: a JSON body goes to every connection of ``user``.
* ``POST /groups/{group}``: a JSON body goes to every member of the group.
* ``GET /online/{user}``: presence.

Run it (Ctrl+C delivers queued messages and closes sockets with 1001 first)::

    python examples/starlette_app.py            # http://127.0.0.1:8001
    python -m websockets 'ws://127.0.0.1:8001/ws?token=alice-token'
    curl -X POST -d '{"text": "hi"}' http://127.0.0.1:8001/notify/alice
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from wsregistry import Connection, Registry
from wsregistry.adapters.starlette import Identity, RegistryEndpoint

USERS = {
    "alice-token": ("alice", {"admins"}),
    "bob-token": ("bob", set()),
}
"""A stand-in for your user store: token → (user id, groups)."""


def create_app(registry: Registry) -> Starlette:
    """The example app around ``registry`` (started by the app's lifespan)."""

    async def authenticate(websocket: WebSocket) -> Identity | None:
        user = USERS.get(websocket.query_params.get("token", ""))
        if user is None:
            return None  # refused before accept: HTTP 403
        key, groups = user
        return Identity(key=key, groups=frozenset({*groups, "everyone"}))

    async def relay(conn: Connection, data: str | bytes) -> None:
        await registry.broadcast({"from": conn.key, "data": data}, exclude=conn)

    async def notify(request: Request) -> JSONResponse:
        message: Any = await request.json()
        delivered = await registry.send(request.path_params["user"], message)
        return JSONResponse({"delivered": delivered})

    async def to_group(request: Request) -> JSONResponse:
        message: Any = await request.json()
        delivered = await registry.broadcast(message, group=request.path_params["group"])
        return JSONResponse({"delivered": delivered})

    async def online(request: Request) -> JSONResponse:
        user = request.path_params["user"]
        return JSONResponse({"user": user, "connections": await registry.online_count(user)})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with registry:
            yield

    endpoint = RegistryEndpoint(registry, authenticate=authenticate, on_message=relay)
    return Starlette(
        routes=[
            WebSocketRoute("/ws", endpoint),
            Route("/notify/{user}", notify, methods=["POST"]),
            Route("/groups/{group}", to_group, methods=["POST"]),
            Route("/online/{user}", online),
        ],
        lifespan=lifespan,
    )


if __name__ == "__main__":
    import sys

    from wsregistry.adapters.uvicorn import run

    registry = Registry()
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8001
    run(create_app(registry), registry=registry, host="127.0.0.1", port=port)  # Ctrl+C stops
