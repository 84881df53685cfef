"""A FastAPI chat: an authenticated WebSocket route and an HTTP route that pushes to a user.

Run it: ``python -m docs_src.fastapi_app``, then connect to ws://127.0.0.1:8000/ws?token=alice-token.
"""

from __future__ import annotations

from fastapi import FastAPI, WebSocket

from wsregistry import Connection, Registry
from wsregistry.adapters import uvicorn as wsr_uvicorn
from wsregistry.adapters.fastapi import Identity, RegistryDep, RegistryEndpoint, registry_lifespan

TOKENS = {"alice-token": "alice", "bob-token": "bob"}  # stands in for your user store

registry = Registry()


async def authenticate(websocket: WebSocket) -> Identity | None:
    user = TOKENS.get(websocket.query_params.get("token", ""))
    return Identity(key=user, groups={"lobby"}) if user else None  # None: 403


async def on_connect(conn: Connection) -> None:
    await conn.send({"type": "welcome", "user": conn.key})


async def on_message(conn: Connection, data: str | bytes) -> None:
    if isinstance(data, str):  # a text chat: binary frames are ignored
        await registry.broadcast({"from": conn.key, "text": data}, group="lobby", exclude=conn)


chat = RegistryEndpoint(
    registry, authenticate=authenticate, on_connect=on_connect, on_message=on_message
)
app = FastAPI(lifespan=registry_lifespan(registry))
app.add_api_websocket_route("/ws", chat.handle)


@app.post("/notify/{user}")
async def notify(user: str, registry: RegistryDep) -> dict[str, int]:
    return {"queued_here": await registry.send(user, {"type": "notice"})}


if __name__ == "__main__":
    wsr_uvicorn.run(app, registry=registry, host="127.0.0.1", port=8000)
