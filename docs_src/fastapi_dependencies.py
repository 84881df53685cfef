"""FastAPI: run your own dependencies first, then hand the socket to the registry."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, WebSocket, WebSocketException, status

from wsregistry import Connection, Registry
from wsregistry.adapters.fastapi import Identity, RegistryEndpoint, registry_lifespan

TOKENS = {"alice-token": "alice"}  # stands in for your user store

registry = Registry()
app = FastAPI(lifespan=registry_lifespan(registry))


# --8<-- [start:deps]
async def current_user(websocket: WebSocket) -> str:
    """An ordinary FastAPI dependency; it runs before the socket is accepted."""
    user = TOKENS.get(websocket.query_params.get("token", ""))
    if user is None:  # refused before accept: the server answers HTTP 403
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)
    websocket.state.user = user  # hand the result to authenticate()
    return user


async def authenticate(websocket: WebSocket) -> Identity | None:
    return Identity(key=websocket.state.user)


async def on_connect(conn: Connection) -> None:
    await conn.send({"type": "welcome", "user": conn.key})


chat = RegistryEndpoint(registry, authenticate=authenticate, on_connect=on_connect)


@app.websocket("/ws")
async def websocket_route(
    websocket: WebSocket, user: Annotated[str, Depends(current_user)]
) -> None:
    await chat.handle(websocket)  # Origin check, authenticate(), accept, register, serve
    # --8<-- [end:deps]
