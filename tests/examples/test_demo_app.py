"""The demo over real sockets: uvicorn, the FastAPI adapter, ``websockets`` clients."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from demo.app import create_app
from websockets.exceptions import ConnectionClosed

from wsregistry import CloseCode

from ..helpers import TIMEOUT
from .demo_client import Tab, login, tab

pytestmark = pytest.mark.anyio

Serve = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def running_demo(
    serve: Serve, listen_socket: socket.socket
) -> Callable[[], AbstractAsyncContextManager[tuple[str, httpx.AsyncClient]]]:
    @asynccontextmanager
    async def run() -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
        port = listen_socket.getsockname()[1]
        app = create_app(secret="test-secret", allowed_origins=[f"http://127.0.0.1:{port}"])
        async with (
            serve(app, listen_socket) as host,
            httpx.AsyncClient(base_url=f"http://{host}") as http,
        ):
            yield host, http

    return run


async def _online(http: httpx.AsyncClient) -> dict[str, int]:
    users: dict[str, int] = (await http.get("/api/online")).json()["users"]
    return users


async def _barrier(sender: Tab, *readers: Tab, text: str) -> list[list[dict[str, Any]]]:
    """Announce ``text`` and read each reader up to it: per-connection order makes
    everything sent to a reader before the announcement show up in what is returned."""
    await sender.send(type="announce", text=text)
    return [await reader.until("announcement", text=text) for reader in readers]


async def test_direct_message_reaches_every_tab_of_both_users_and_nobody_else(
    running_demo: Any,
) -> None:
    async with running_demo() as (host, http):
        alice, bob, carol = [await login(http, name) for name in ("alice", "bob", "carol")]
        async with (
            tab(host, alice) as alice1,
            tab(host, alice) as alice2,
            tab(host, bob) as bob1,
            tab(host, carol) as carol1,
        ):
            assert carol1.welcome["you"] == "carol"
            assert set(carol1.welcome["online"]) == {"alice", "bob", "carol"}
            assert await _online(http) == {"alice": 2, "bob": 1, "carol": 1}

            await bob1.send(type="dm", to="alice", text="hello alice")
            for reader in (alice1, alice2, bob1):
                (*_, dm) = await reader.until("dm", text="hello alice")
                assert (dm["from"], dm["to"]) == ("bob", "alice")
            (seen,) = await _barrier(alice1, carol1, text="barrier")
            assert not [m for m in seen if m["type"] == "dm"]

            await bob1.send(type="dm", to="nobody", text="hi")
            (*_, error) = await bob1.until("error")
            assert error["text"] == "nobody is offline"


async def test_room_messages_reach_room_members_only(running_demo: Any) -> None:
    async with running_demo() as (host, http):
        alice, bob = await login(http, "alice"), await login(http, "bob")
        async with tab(host, alice) as alice1, tab(host, alice) as alice2, tab(host, bob) as bob1:
            await alice1.send(type="join", room="Lobby")
            await alice1.until("joined", room="lobby")
            await bob1.send(type="join", room="lobby")
            await bob1.until("joined", room="lobby")
            await alice1.until("room_notice", text="bob joined")

            await bob1.send(type="say", room="lobby", text="hi room")
            for member in (alice1, bob1):
                (*_, said) = await member.until("room", text="hi room")
                assert said["from"] == "bob"
            (seen,) = await _barrier(bob1, alice2, text="barrier")
            assert not [m for m in seen if m["type"] in ("room", "room_notice")]

            await alice2.send(type="say", room="lobby", text="not a member")
            (*_, error) = await alice2.until("error")
            assert error["text"] == "join #lobby first"

            await bob1.send(type="leave", room="lobby")
            await bob1.until("left", room="lobby")
            await alice1.until("room_notice", text="bob left")
            await alice1.send(type="say", room="lobby", text="alone")
            await alice1.until("room", text="alone")
            (seen,) = await _barrier(alice1, bob1, text="barrier 2")
            assert not [m for m in seen if m["type"] == "room"]


async def test_presence_follows_the_last_tab(running_demo: Any) -> None:
    async with running_demo() as (host, http):
        alice, bob = await login(http, "alice"), await login(http, "bob")
        async with tab(host, bob) as bob1:
            async with tab(host, alice) as alice1:
                await bob1.until("presence", user="alice", online=True)
                async with tab(host, alice):
                    await bob1.until("presence", user="alice", online=True)
                    assert (await _online(http))["alice"] == 2
                with anyio.fail_after(TIMEOUT):
                    while (await _online(http)).get("alice") != 1:
                        await alice1.send(type="nothing")  # a round trip, then ask again
                        await alice1.until("error")
                (seen,) = await _barrier(alice1, bob1, text="still here")
                assert {"type": "presence", "user": "alice", "online": False} not in seen
            await bob1.until("presence", user="alice", online=False)
            assert await _online(http) == {"bob": 1}


async def test_refusals_and_bad_input(running_demo: Any) -> None:
    async with running_demo() as (host, http):
        assert (await http.get("/api/me")).status_code == 401
        assert (await http.post("/api/login", json={"name": "no spaces"})).status_code == 422
        token = await login(http, "alice")
        assert (await http.get("/api/me")).json() == {"name": "alice"}  # the cookie
        assert (await http.post("/api/logout")).json() == {"ok": True}
        assert (await http.get("/api/me")).status_code == 401

        for bad_token, origin, code in (
            (None, None, CloseCode.UNAUTHORIZED),
            (token + "x", None, CloseCode.UNAUTHORIZED),
            (token, "https://evil.example", CloseCode.FORBIDDEN),
        ):
            async with tab(host, bad_token, origin=origin, welcome=False) as refused:
                with pytest.raises(ConnectionClosed) as closed:
                    await refused.next()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == code

        async with tab(host, token) as alice1:
            await alice1.ws.send("not json")
            assert (await alice1.until("error"))[-1]["text"] == "messages are JSON objects"
            await alice1.send(type="join", room="bad room!")
            assert "room name" in (await alice1.until("error"))[-1]["text"]
            await alice1.send(type="announce", text="   ")
            assert "non-empty" in (await alice1.until("error"))[-1]["text"]


async def test_index_and_static_files_are_served(running_demo: Any) -> None:
    async with running_demo() as (_host, http):
        index = await http.get("/")
        assert index.status_code == 200
        assert "<title>wsregistry demo</title>" in index.text
        for path in ("/static/app.js", "/static/style.css"):
            assert (await http.get(path)).status_code == 200
        health = (await http.get("/api/health")).json()
        assert health["backend"] == "MemoryBackend"


async def test_demo_exposes_metrics_and_readiness(running_demo: Any) -> None:
    async with running_demo() as (host, http):
        alice = await login(http, "alice")
        async with tab(host, alice):  # returns once the server registered it
            metrics = await http.get("/metrics")
            assert metrics.status_code == 200
            assert 'wsregistry_connections{registry="default"} 1.0' in metrics.text
            assert 'wsregistry_connects_total{registry="default"} 1.0' in metrics.text
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True
        assert (await http.get("/livez")).json() == {"alive": True}
