"""Real servers on 127.0.0.1 for the adapter tests, and real ``websockets`` clients.

``Harness`` starts one of the served stacks on a free port with a listening
socket whose send buffer is small (accepted sockets inherit it, so a client
that stops reading fills up quickly):

* ``starlette-<impl>``: uvicorn (``ws=<impl>``) running a Starlette app with a
  :class:`RegistryEndpoint` route, the registry in the app's lifespan;
* ``fastapi-<impl>``: the same with FastAPI, ``registry_lifespan`` and an
  ``APIRouter`` route;
* ``websockets``: :func:`wsregistry.adapters.websockets.serve`.

uvicorn runs through :class:`wsregistry.adapters.uvicorn.Server` (drain and
1001 before uvicorn's own shutdown). Clients name their user in the query
string (``?user=alice&groups=a,b``); ``user=bad`` fails authentication. Every
admitted client first receives ``{"type": "welcome"}`` from ``on_connect``, so
``Harness.connect`` returns once the connection is registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import uvicorn
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection

from wsregistry import Connection, Registry
from wsregistry.adapters import Identity
from wsregistry.adapters import fastapi as wsr_fastapi
from wsregistry.adapters import starlette as wsr_starlette
from wsregistry.adapters import uvicorn as wsr_uvicorn
from wsregistry.adapters import websockets as wsr_websockets

from ..helpers import TIMEOUT

UVICORN_IMPLS = ("websockets", "websockets-sansio", "wsproto")
KINDS = (
    *(f"starlette-{impl}" for impl in UVICORN_IMPLS),
    "fastapi-websockets",
    "fastapi-wsproto",
    "websockets",
)
LEGACY = frozenset(k for k in KINDS if k.endswith("-websockets"))
"""Kinds on uvicorn's deprecated legacy ``websockets`` implementation."""
LISTEN_SNDBUF = 32 * 1024


def identity_from_query(query: str) -> Identity | None:
    params = parse_qs(query)
    user = params.get("user", [""])[0]
    if not user or user == "bad":
        return None
    groups = [g for g in params.get("groups", [""])[0].split(",") if g]
    return Identity(key=user, groups=set(groups), metadata={"user": user})


async def starlette_auth(websocket: WebSocket) -> Identity | None:
    return identity_from_query(websocket.url.query)


async def websockets_auth(connection: ServerConnection) -> Identity | None:
    request = connection.request
    assert request is not None
    return identity_from_query(urlsplit(request.path).query)


class Harness:
    """One served stack; ``async with Harness(kind, ...) as h``."""

    def __init__(
        self,
        kind: str,
        *,
        registry: Registry | None = None,
        ping: tuple[float | None, float | None] = (20.0, 20.0),
        on_message: Callable[[Connection, str | bytes], Awaitable[None]] | None = None,
        drain_on_shutdown: bool = True,
        graceful_timeout: float = TIMEOUT,
        middleware: Callable[[Any], Any] | None = None,
        custom_endpoint: wsr_starlette.RegistryEndpoint | None = None,
        **endpoint: Any,
    ) -> None:
        self.kind = kind
        self.registry = registry if registry is not None else Registry()
        self.ping = ping
        self.endpoint = endpoint
        self.on_message = on_message
        self.drain_on_shutdown = drain_on_shutdown  # False: plain uvicorn.Server
        self.graceful_timeout = graceful_timeout
        self.middleware = middleware
        self.custom_endpoint = custom_endpoint  # replaces the Starlette endpoint
        self.disconnected: list[Connection] = []
        self._disconnect_seen: anyio.Event | None = None
        self.port = 0
        self._stop: Callable[[], Awaitable[None]] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def _on_connect(self, conn: Connection) -> None:
        await conn.send({"type": "welcome", "key": conn.key})

    async def _on_disconnect(self, conn: Connection) -> None:
        self.disconnected.append(conn)
        if self._disconnect_seen is not None:
            self._disconnect_seen.set()

    async def wait_disconnected(self, count: int) -> None:
        """Wait until ``on_disconnect`` ran ``count`` times (the handlers finished)."""
        with anyio.fail_after(TIMEOUT):
            while len(self.disconnected) < count:
                self._disconnect_seen = anyio.Event()
                await self._disconnect_seen.wait()

    def _options(self) -> dict[str, Any]:
        return {
            "on_message": self.on_message,
            "on_connect": self._on_connect,
            "on_disconnect": self._on_disconnect,
            **self.endpoint,
        }

    async def __aenter__(self) -> Harness:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LISTEN_SNDBUF)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        if self.kind == "websockets":
            await self._start_websockets(sock)
        else:
            await self._start_uvicorn(sock)
        return self

    async def _start_websockets(self, sock: socket.socket) -> None:
        interval, timeout = self.ping
        started, stopping = anyio.Event(), anyio.Event()

        async def run() -> None:
            server_cm = wsr_websockets.serve(
                self.registry,
                sock=sock,
                authenticate=websockets_auth,
                ping_interval=interval,
                ping_timeout=timeout,
                **self._options(),
            )
            async with self.registry, server_cm:
                started.set()
                await stopping.wait()

        # A plain task, not a task group: the test may stop the server from
        # inside its own task groups.
        task = asyncio.create_task(run())
        await self._wait_started(task, lambda: started.is_set())

        async def stop() -> None:
            stopping.set()
            await task

        self._stop = stop

    @staticmethod
    async def _wait_started(task: asyncio.Task[None], started: Callable[[], bool]) -> None:
        with anyio.fail_after(TIMEOUT):
            # uvicorn offers no startup event, only the ``started`` flag
            while not started():
                if task.done():
                    task.result()  # startup failed: raise its error
                await anyio.sleep(0.005)

    def _app(self) -> Any:
        framework, _, _ = self.kind.partition("-")
        registry = self.registry
        if framework == "starlette":
            endpoint = self.custom_endpoint or wsr_starlette.RegistryEndpoint(
                registry, authenticate=starlette_auth, **self._options()
            )

            @contextlib.asynccontextmanager
            async def lifespan(app: Starlette) -> AsyncIterator[None]:
                async with registry:
                    yield

            return Starlette(routes=[WebSocketRoute("/ws", endpoint)], lifespan=lifespan)
        endpoint = wsr_fastapi.RegistryEndpoint(
            registry, authenticate=starlette_auth, **self._options()
        )
        router = APIRouter()
        router.add_api_websocket_route("/ws", endpoint.handle)

        @router.get("/online/{user}")
        async def online(user: str, registry: wsr_fastapi.RegistryDep) -> dict[str, Any]:
            return {"online": await registry.is_online(user), "node": registry.node_id}

        app = FastAPI(lifespan=wsr_fastapi.registry_lifespan(registry))
        app.include_router(router)
        return app

    async def _start_uvicorn(self, sock: socket.socket) -> None:
        _, _, impl = self.kind.partition("-")
        interval, timeout = self.ping
        app = self._app()
        config = uvicorn.Config(
            app if self.middleware is None else self.middleware(app),
            ws=impl,
            lifespan="on",
            log_level="warning",
            ws_ping_interval=interval,
            ws_ping_timeout=timeout,
            ws_max_size=16 * 1024 * 1024,
            timeout_graceful_shutdown=self.graceful_timeout,  # type: ignore[arg-type]
        )
        server = (
            wsr_uvicorn.Server(config, registry=self.registry)
            if self.drain_on_shutdown
            else uvicorn.Server(config)
        )
        task = asyncio.create_task(server.serve([sock]))
        await self._wait_started(task, lambda: server.started)

        async def stop() -> None:
            server.should_exit = True
            await task

        self._stop = stop

    async def stop(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            await stop()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def connect(
        self,
        user: str,
        *,
        groups: tuple[str, ...] = (),
        welcome: bool = True,
        **kwargs: Any,
    ) -> ClientConnection:
        """Connect as ``user``; by default wait for the welcome (= registered)."""
        query = f"?user={user}" + (f"&groups={','.join(groups)}" if groups else "")
        kwargs.setdefault("open_timeout", TIMEOUT)
        kwargs.setdefault("max_size", None)
        client = await connect(self.url + query, **kwargs)
        if welcome:
            with anyio.fail_after(TIMEOUT):
                first = json.loads(await client.recv())
            assert first == {"type": "welcome", "key": user}
        return client


async def recv_json(client: ClientConnection) -> Any:
    with anyio.fail_after(TIMEOUT):
        return json.loads(await client.recv())
