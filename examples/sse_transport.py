"""A custom transport: Server-Sent Events as a fallback, in the same registry as WebSockets.

Some networks (old proxies, locked-down corporate gateways) do not pass WebSockets.
Server-Sent Events are plain HTTP: the browser's ``EventSource`` keeps a GET open
and the server writes ``data: ...`` lines. The registry does not care what a
connection is made of: anything with ``async send(data)`` and ``async close(code,
reason)`` is a :class:`~wsregistry.Transport`. Here that is :class:`SSETransport`,
a bounded in-memory stream that a Starlette ``StreamingResponse`` drains.

Run it::

    uvicorn --app-dir examples sse_transport:app --port 8000
    curl -N 'http://127.0.0.1:8000/events?user=alice'          # one terminal
    curl -X POST -d '{"text": "hi"}' http://127.0.0.1:8000/notify/alice  # another

The same registry serves WebSockets at ``/ws?user=alice`` (the Starlette
adapter): ``/notify/alice`` reaches alice's WebSocket tabs and her SSE tabs alike.

Both endpoints identify users by a query parameter to keep the example short;
a real application authenticates the request (cookie, header) first.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from wsregistry import Connection, Registry
from wsregistry.adapters.starlette import Identity, RegistryEndpoint

HEARTBEAT_SECONDS = 15.0
"""A comment line this often keeps proxies from timing out and detects dead clients."""


class SSETransport:
    """A :class:`~wsregistry.Transport` that turns frames into Server-Sent Events.

    Frames go through a bounded buffer (``max_buffered`` events); when it is full,
    ``send`` waits, so the registry's own bounded queue and its overflow policy
    protect the server from a client that stopped reading, exactly as for a
    WebSocket. Text frames become ``message`` events; binary frames become
    ``binary`` events with base64 data (SSE carries text only).
    """

    def __init__(self, *, max_buffered: int = 16) -> None:
        self._writer, self._reader = anyio.create_memory_object_stream[str](max_buffered)

    async def send(self, data: str | bytes) -> None:
        """Queue one event; waits while the buffer is full."""
        await self._writer.send(_event(data))

    def send_nowait(self, data: str | bytes) -> bool:
        """The registry's fast path: queue the event if the buffer has room."""
        try:
            self._writer.send_nowait(_event(data))
        except anyio.WouldBlock:
            return False
        return True

    async def close(self, code: int, reason: str) -> None:
        """Tell the client why (a ``close`` event) when there is room, then end the stream."""
        closing = json.dumps({"code": code, "reason": reason})
        with contextlib.suppress(
            anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError
        ):
            self._writer.send_nowait(f"event: close\ndata: {closing}\n\n")
        self._writer.close()

    def abort(self) -> None:
        """End the stream at once, dropping buffered events."""
        self._writer.close()
        self._reader.close()

    async def stream(self, registry: Registry, *, key: str) -> AsyncIterator[str]:
        """Register under ``key`` and yield the response body until either side ends it.

        When the client goes away, Starlette cancels this generator and the
        ``session`` block unregisters the connection.
        """
        async with registry.session(self, key=key):
            yield "retry: 2000\n: connected\n\n"
            async with self._reader:
                while True:
                    event = None
                    with anyio.move_on_after(HEARTBEAT_SECONDS):
                        try:
                            event = await self._reader.receive()
                        except anyio.EndOfStream:  # closed by the registry
                            return
                    yield ": ping\n\n" if event is None else event


def _event(data: str | bytes) -> str:
    if isinstance(data, bytes):
        return f"event: binary\ndata: {base64.b64encode(data).decode('ascii')}\n\n"
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return lines + "\n"


def create_app(registry: Registry | None = None) -> Starlette:
    """The example application; pass a registry to share it with other endpoints."""
    registry = registry if registry is not None else Registry()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with registry:
            yield

    async def events(request: Request) -> Response:
        user = request.query_params.get("user", "")
        if not user:
            return JSONResponse({"detail": "?user= is required"}, status_code=400)
        return StreamingResponse(
            SSETransport().stream(registry, key=user),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def ws_user(websocket: WebSocket) -> Identity | None:
        user = websocket.query_params.get("user", "")
        return Identity(key=user) if user else None

    async def ws_hello(conn: Connection) -> None:
        await conn.send({"type": "connected"})  # like the SSE stream's first comment

    async def notify(request: Request) -> Response:
        message: Any = await request.json()
        delivered = await registry.send(request.path_params["user"], message)
        return JSONResponse({"delivered": delivered})

    async def stats(request: Request) -> Response:
        current = registry.stats()
        return JSONResponse({"connections": current.connections, "sent": current.sent})

    routes = [
        Route("/events", events),
        WebSocketRoute(
            "/ws", RegistryEndpoint(registry, authenticate=ws_user, on_connect=ws_hello)
        ),
        Route("/notify/{user}", notify, methods=["POST"]),
        Route("/stats", stats),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.registry = registry
    return app


app = create_app()
