"""The drop-in ConnectionManager behind an unchanged "old-style" FastAPI app.

Real uvicorn, real ``websockets`` clients. The app below is the widespread
hand-written pattern with only the import changed.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect

from wsregistry import CloseCode, Registry
from wsregistry.compat.connection_manager import ConnectionManager, notify_frontend

from ..helpers import TIMEOUT
from ..servers import bound_socket, serve

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn


def old_style_app(manager: ConnectionManager, *, lifespan: bool = True) -> FastAPI:
    app = FastAPI(lifespan=manager.lifespan) if lifespan else FastAPI()

    @app.websocket("/ws/{user_id}")
    async def websocket_endpoint(websocket: WebSocket, user_id: str) -> None:
        await manager.connect(user_id, websocket)
        await websocket.send_json({"hello": user_id})  # the app may still write directly
        try:
            while True:
                text = await websocket.receive_text()
                if text == "leave":
                    manager.disconnect(user_id, websocket)
        except WebSocketDisconnect:
            manager.disconnect(user_id)

    @app.post("/send/{user_id}")
    async def send(user_id: str, body: dict[str, Any]) -> dict[str, int]:
        return {"queued": await manager.send_message(user_id, body)}

    @app.post("/broadcast")
    async def broadcast(body: dict[str, Any]) -> dict[str, int]:
        return {"queued": await manager.broadcast(body)}

    @app.get("/connections/{user_id}")
    async def connections(user_id: str) -> dict[str, Any]:
        return {
            "count": len(manager.get_connections(user_id)),
            "newest": manager.get_connection(user_id) is not None,
            "active": sorted(str(key) for key in manager.active_connections),
            "in_active": user_id in manager.active_connections,
        }

    @app.post("/mfa/{user_id}")
    async def mfa(user_id: str) -> dict[str, bool]:
        return {"sent": await notify_frontend(user_id, manager, {"message": "MFA_REQUIRED"})}

    @app.post("/notify/{user_id}")
    async def notify(user_id: str) -> dict[str, bool]:
        return {"sent": await notify_frontend(user_id, manager, {"message": "hello"})}

    @app.post("/kick/{user_id}")
    async def kick(user_id: str) -> dict[str, bool]:
        manager.disconnect(user_id)  # outside any handler: every connection of the user
        return {"ok": True}

    return app


@asynccontextmanager
async def running(
    manager: ConnectionManager, *, lifespan: bool = True, sock: socket.socket | None = None
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    async with (
        serve(old_style_app(manager, lifespan=lifespan), sock) as host,
        httpx.AsyncClient(base_url=f"http://{host}") as http,
    ):
        yield host, http


@asynccontextmanager
async def tab(host: str, user: str) -> AsyncIterator[ClientConnection]:
    async with connect(f"ws://{host}/ws/{user}") as ws:
        assert await recv(ws) == {"hello": user}  # sent after connect(): registered
        yield ws


async def recv(ws: ClientConnection) -> Any:
    with anyio.fail_after(TIMEOUT):
        return json.loads(await ws.recv())


async def wait_count(http: httpx.AsyncClient, user: str, count: int) -> None:
    """Wait for the server's handlers to catch up (each check is an HTTP round trip)."""
    with anyio.fail_after(TIMEOUT):
        while (await http.get(f"/connections/{user}")).json()["count"] != count:
            pass


async def test_every_tab_receives_and_lookups_keep_their_shapes() -> None:
    async with running(ConnectionManager()) as (host, http):
        async with tab(host, "alice") as alice1, tab(host, "alice") as alice2, tab(host, "bob"):
            assert (await http.post("/send/alice", json={"n": 1})).json() == {"queued": 2}
            assert await recv(alice1) == {"n": 1}
            assert await recv(alice2) == {"n": 1}
            state = (await http.get("/connections/alice")).json()
            assert state == {
                "count": 2,
                "newest": True,
                "active": ["alice", "bob"],
                "in_active": True,
            }
            assert (await http.post("/broadcast", json={"n": 2})).json() == {"queued": 3}
            assert await recv(alice1) == {"n": 2}
        state = (await http.get("/connections/nobody")).json()
        assert state["newest"] is False
        assert state["in_active"] is False
        assert (await http.post("/send/nobody", json={})).json() == {"queued": 0}


async def test_an_old_handlers_cleanup_never_removes_the_newer_connection() -> None:
    # The reconnect race: tab 2 (the reconnect) is registered while tab 1's handler is still
    # running; tab 1's handler then runs `manager.disconnect("alice")`. With a dict this
    # removed the new socket; here it removes only the handler's own connection.
    async with running(ConnectionManager()) as (host, http), tab(host, "alice") as reconnect:
        async with tab(host, "alice"):
            await wait_count(http, "alice", 2)
        await wait_count(http, "alice", 1)
        assert (await http.post("/send/alice", json={"still": "here"})).json() == {"queued": 1}
        assert await recv(reconnect) == {"still": "here"}


async def test_disconnect_with_the_socket_removes_exactly_that_socket() -> None:
    async with (
        running(ConnectionManager()) as (host, http),
        tab(host, "alice") as alice1,
        tab(host, "alice") as alice2,
    ):
        await alice1.send("leave")  # the handler calls manager.disconnect(user_id, websocket)
        await wait_count(http, "alice", 1)
        await http.post("/send/alice", json={"n": 1})
        assert await recv(alice2) == {"n": 1}


async def test_disconnect_outside_a_handler_forgets_the_user() -> None:
    async with (
        running(ConnectionManager()) as (host, http),
        tab(host, "alice"),
        tab(host, "alice"),
        tab(host, "bob") as bob,
    ):
        await http.post("/kick/alice")
        assert (await http.get("/connections/alice")).json()["count"] == 0
        assert (await http.post("/send/alice", json={})).json() == {"queued": 0}
        assert (await http.post("/send/bob", json={"n": 1})).json() == {"queued": 1}
        assert await recv(bob) == {"n": 1}


async def test_notify_frontend_says_whether_it_sent_and_requires_mfa_messages() -> None:
    async with running(ConnectionManager()) as (host, http):
        assert (await http.post("/notify/alice")).json() == {"sent": False}
        refused = await http.post("/mfa/alice")
        assert refused.status_code == 400
        assert "alice" in refused.json()["detail"]
        async with tab(host, "alice") as alice:
            assert (await http.post("/notify/alice")).json() == {"sent": True}
            assert await recv(alice) == {"message": "hello"}
            assert (await http.post("/mfa/alice")).json() == {"sent": True}
            assert await recv(alice) == {"message": "MFA_REQUIRED"}


async def test_without_a_lifespan_the_registry_starts_lazily() -> None:
    manager = ConnectionManager()
    try:
        async with running(manager, lifespan=False) as (host, http):
            assert not manager.registry.running
            async with tab(host, "alice") as alice:
                assert manager.registry.running
                await http.post("/send/alice", json={"lazy": True})
                assert await recv(alice) == {"lazy": True}
    finally:
        await manager.aclose()
        await manager.aclose()  # idempotent
    assert not manager.registry.running


async def test_the_lifespan_closes_connections_on_shutdown() -> None:
    manager = ConnectionManager()
    async with running(manager) as (host, _http):
        ws = await connect(f"ws://{host}/ws/alice")
        assert await recv(ws) == {"hello": "alice"}
        assert manager.registry.running
    assert not manager.registry.running
    await ws.wait_closed()
    assert ws.close_code is not None
    # after shutdown nobody is online: the calls find nobody, like the hand-written manager
    assert await manager.send_message("alice", {"too": "late"}) == 0
    assert await manager.broadcast({"too": "late"}) == 0
    assert await notify_frontend("alice", manager, {"message": "hello"}) is False


async def test_a_stalled_client_does_not_hold_back_broadcasts() -> None:
    # The hand-written broadcast awaited each client in turn: one client that stopped
    # reading stalled everyone. Here it is closed (1013) once its bounded queue is full.
    count, size = 120, 16 * 1024
    manager = ConnectionManager(Registry(max_queue_bytes=128 * 1024, close_timeout=0.5))
    listening = bound_socket()
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)  # small server buffers
    async with running(manager, sock=listening) as (host, _http), tab(host, "ok") as healthy:
        small_buffer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        small_buffer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        address, port = host.split(":")
        small_buffer.connect((address, int(port)))
        stalled = await connect(
            f"ws://{host}/ws/stalled", sock=small_buffer, ping_interval=None, compression=None
        )
        assert await recv(stalled) == {"hello": "stalled"}
        stalled.transport.pause_reading()  # never reads again
        (stalled_conn,) = manager.registry.lookup("stalled")
        payloads = [struct.pack("!I", n) + os.urandom(size) for n in range(count)]
        got: list[bytes] = []

        async def read() -> None:
            while len(got) < count:
                data = await healthy.recv()
                assert isinstance(data, bytes)
                got.append(data)

        with anyio.fail_after(TIMEOUT * 3):
            async with anyio.create_task_group() as readers:
                readers.start_soon(read)
                for payload in payloads:
                    await manager.broadcast(payload)
            await stalled_conn.wait_closed()
        assert got == payloads
        assert stalled_conn.close_code == CloseCode.TRY_AGAIN_LATER
        assert manager.registry.stats().slow_consumer_closes == 1
        assert manager.get_connections("stalled") == []
        stalled.transport.abort()


async def test_active_connections_is_read_only() -> None:
    manager = ConnectionManager(Registry())
    view: Any = manager.active_connections
    with pytest.raises(TypeError):
        view["alice"] = object()
    with pytest.raises(TypeError):
        del view["alice"]
    assert len(view) == 0
    assert list(view) == []
    assert 42 not in view
    assert None not in view
    with pytest.raises(KeyError):
        view["alice"]
