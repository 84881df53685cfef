from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import httpx
import pytest
from starlette_app import create_app
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from wsregistry import CloseCode, Registry

from ..helpers import TIMEOUT

pytestmark = pytest.mark.anyio

Serve = Callable[..., AbstractAsyncContextManager[str]]


async def _recv(ws: ClientConnection) -> Any:
    with anyio.fail_after(TIMEOUT):
        return json.loads(await ws.recv())


async def test_http_routes_push_to_users_and_groups(serve: Serve) -> None:
    registry = Registry()
    async with (
        serve(create_app(registry), registry=registry) as host,
        httpx.AsyncClient(base_url=f"http://{host}") as http,
        connect(f"ws://{host}/ws?token=alice-token") as alice1,
        connect(f"ws://{host}/ws?token=alice-token") as alice2,
        connect(f"ws://{host}/ws?token=bob-token") as bob,
    ):
        assert (await http.get("/online/alice")).json() == {"user": "alice", "connections": 2}
        assert (await http.post("/notify/alice", json={"n": 1})).json() == {"delivered": 2}
        assert await _recv(alice1) == {"n": 1}
        assert await _recv(alice2) == {"n": 1}
        assert (await http.post("/groups/admins", json={"n": 2})).json() == {"delivered": 2}
        assert (await http.post("/groups/everyone", json={"n": 3})).json() == {"delivered": 3}
        assert await _recv(bob) == {"n": 3}  # order: the admins message never came first
        await bob.send("hello")
        for ws in (alice1, alice2):
            assert await _recv(ws) == {"n": 2}
            assert await _recv(ws) == {"n": 3}
            assert await _recv(ws) == {"from": "bob", "data": "hello"}


async def test_unknown_token_is_refused_with_http_403(serve: Serve) -> None:
    registry = Registry()
    async with serve(create_app(registry), registry=registry) as host:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://{host}/ws?token=nope"):
                pass
        assert refused.value.response.status_code == 403
        assert registry.stats().connections == 0


async def test_shutdown_delivers_queued_messages_and_closes_with_1001(serve: Serve) -> None:
    registry = Registry()
    async with serve(create_app(registry), registry=registry) as host:
        alice = await connect(f"ws://{host}/ws?token=alice-token")
        bob = await connect(f"ws://{host}/ws?token=bob-token")
        await bob.send("registered?")
        assert await _recv(alice) == {"from": "bob", "data": "registered?"}
        await registry.send("bob", {"bye": True})
    # The server has stopped: what was queued arrived first, then the close frame.
    assert await _recv(bob) == {"bye": True}
    with pytest.raises(ConnectionClosed) as closed:
        await _recv(bob)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CloseCode.GOING_AWAY
    await alice.close()
