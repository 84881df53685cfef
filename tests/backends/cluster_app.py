"""A Starlette app with a Redis- or NATS-backed registry, run as one process of a test cluster.

``python -m tests.backends.cluster_app`` binds 127.0.0.1:0, prints ``PORT <n>``
and serves until killed. Settings come from the environment: ``WSR_BACKEND``
(``redis``, the default, or ``nats``), ``REDIS_URL``, ``NATS_URL``,
``WSR_NAMESPACE``, ``WSR_HEARTBEAT`` (seconds).

* ``/ws?key=K&group=G&group=H`` registers the socket (``key`` may be ``int:7``)
  and sends ``{"hello": <connection id>}`` once it is reachable cluster-wide.
* ``POST /send``, ``/broadcast``, ``/to-connection``, ``GET /online``, ``/stats``
  drive the registry: JSON in, JSON out.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from wsregistry import Backend, Connection, Key, NotConnected, Registry
from wsregistry.adapters.starlette import Identity, RegistryEndpoint


def make_backend() -> Backend:
    namespace = os.environ.get("WSR_NAMESPACE", "wsregistry")
    heartbeat = float(os.environ.get("WSR_HEARTBEAT", "1.0"))
    if os.environ.get("WSR_BACKEND", "redis") == "nats":
        from wsregistry.backends.nats import NatsBackend

        return NatsBackend(
            os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
            namespace=namespace,
            heartbeat_interval=heartbeat,
        )
    from wsregistry.backends.redis import RedisBackend

    return RedisBackend(
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        namespace=namespace,
        heartbeat_interval=heartbeat,
    )


registry = Registry(backend=make_backend())


def parse_key(raw: str) -> Key:
    return int(raw[4:]) if raw.startswith("int:") else raw


async def authenticate(websocket: WebSocket) -> Identity | None:
    key = websocket.query_params.get("key")
    if key is None:
        return None
    return Identity(key=parse_key(key), groups=frozenset(websocket.query_params.getlist("group")))


async def hello(conn: Connection) -> None:
    await conn.send({"hello": conn.id})


async def send(request: Request) -> JSONResponse:
    body = await request.json()
    try:
        local = await registry.send(
            parse_key(body["key"]), body["message"], require=body.get("require", False)
        )
    except NotConnected:
        return JSONResponse({"offline": True})
    return JSONResponse({"local": local})


async def broadcast(request: Request) -> JSONResponse:
    body = await request.json()
    local = await registry.broadcast(
        body["message"], group=body.get("group"), exclude=body.get("exclude")
    )
    return JSONResponse({"local": local})


async def to_connection(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse({"local": await registry.send_to_connection(body["id"], body["message"])})


async def online(request: Request) -> JSONResponse:
    key = parse_key(request.query_params["key"])
    keys = sorted(str(k) for k in await registry.online_keys())
    return JSONResponse({"count": await registry.online_count(key), "keys": keys})


async def stats(request: Request) -> JSONResponse:
    snapshot = registry.stats()
    return JSONResponse(
        {
            "connections": snapshot.connections,
            "queued": snapshot.queued,
            "dropped": snapshot.dropped,
            "sent": snapshot.sent,
            "connected": snapshot.backend.connected,
            "detail": snapshot.backend.detail,
        }
    )


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with registry:
        yield


endpoint = RegistryEndpoint(registry, authenticate=authenticate, on_connect=hello)
app = Starlette(
    routes=[
        WebSocketRoute("/ws", endpoint),
        Route("/send", send, methods=["POST"]),
        Route("/broadcast", broadcast, methods=["POST"]),
        Route("/to-connection", to_connection, methods=["POST"]),
        Route("/online", online),
        Route("/stats", stats),
    ],
    lifespan=lifespan,
)


def main() -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # clients may connect at once; uvicorn accepts after startup
    print("PORT", sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="websockets-sansio")
    server = uvicorn.Server(config)
    anyio.run(server.serve, [sock])


if __name__ == "__main__":
    main()
