"""A Starlette app for browsers: session-cookie login, Origin allow-list, connection limit."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from wsregistry import Connection, Registry
from wsregistry.adapters.starlette import Identity, RegistryEndpoint

SECRET_KEY = "change-me"  # signs the session cookie: load it from your settings

registry = Registry()


async def login(request: Request) -> JSONResponse:
    user = (await request.json())["user"]  # check a password here
    request.session["user"] = user
    return JSONResponse({"user": user})


# --8<-- [start:endpoint]
async def authenticate(websocket: WebSocket) -> Identity | None:
    user = websocket.session.get("user")  # from the signed session cookie
    if user is None:
        return None  # refused: close 4401 in "close" mode
    agent = websocket.headers.get("user-agent", "")
    return Identity(key=user, groups={"lobby"}, metadata={"user_agent": agent})


async def on_connect(conn: Connection) -> None:
    await conn.send({"type": "welcome", "user": conn.key})


endpoint = RegistryEndpoint(
    registry,
    authenticate=authenticate,
    on_connect=on_connect,
    allowed_origins=["https://chat.example.com", "http://localhost:8000"],
    allow_missing_origin=False,  # cookie auth: a request without Origin is refused too
    max_connections_per_key=2,  # a third tab of the same user is refused with 4429
    refusal="close",  # accept, then close with 4401/4403/4429, which a page can read
    max_message_size=64 * 1024,  # larger inbound messages close the socket with 1009
)
# --8<-- [end:endpoint]


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with registry:
        yield


app = Starlette(
    routes=[Route("/login", login, methods=["POST"]), WebSocketRoute("/ws", endpoint)],
    middleware=[Middleware(SessionMiddleware, secret_key=SECRET_KEY)],
    lifespan=lifespan,
)
