"""Starlette/ASGI specifics on real uvicorn servers: fallbacks, custom refusals,
cancellation, and what uvicorn itself does at shutdown."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from starlette.websockets import WebSocket
from websockets.exceptions import ConnectionClosed, InvalidStatus

from wsregistry import CloseCode, Connection, Registry
from wsregistry.adapters import Identity, Refuse
from wsregistry.adapters.starlette import RegistryEndpoint, StarletteTransport

from ..helpers import TIMEOUT
from ._harness import UVICORN_IMPLS, Harness

pytestmark = pytest.mark.anyio


@pytest.fixture(params=UVICORN_IMPLS)
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def without_denial_extension(app: Any) -> Any:
    """ASGI middleware hiding the WebSocket Denial Response extension from the app."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            extensions = dict(scope.get("extensions") or {})
            extensions.pop("websocket.http.response", None)
            scope = {**scope, "extensions": extensions}
        await app(scope, receive, send)

    return wrapped


async def test_strict_mode_falls_back_to_close_before_accept_http_403(impl: str) -> None:
    async with Harness(
        f"starlette-{impl}", middleware=without_denial_extension, max_connections_per_key=1
    ) as h:
        first = await h.connect("ann")
        with pytest.raises(InvalidStatus) as info:  # 429 needs the extension; ASGI says 403
            await h.connect("ann", welcome=False)
        assert info.value.response.status_code == 403
        assert len(h.registry.lookup("ann")) == 1
        await first.close()


@pytest.mark.parametrize("refusal", ["http", "close"])
async def test_refuse_from_the_hook_sends_its_status_or_code(impl: str, refusal: str) -> None:
    async def authenticate(websocket: WebSocket) -> Identity | None:
        raise Refuse("token expired", status=401, code=4001)

    registry = Registry()
    endpoint = RegistryEndpoint(registry, authenticate=authenticate, refusal=refusal)
    async with Harness(f"starlette-{impl}", registry=registry, custom_endpoint=endpoint) as h:
        if refusal == "http":
            with pytest.raises(InvalidStatus) as info:
                await h.connect("bob", welcome=False)
            assert info.value.response.status_code == 401
            assert info.value.response.body == b"token expired"
        else:
            client = await h.connect("bob", welcome=False)
            with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed) as closed:
                await client.recv()
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "token expired")
        assert registry.stats().connections == 0


async def test_refuses_with_503_while_the_registry_is_not_running(impl: str) -> None:
    never_started = Registry()  # e.g. the app forgot to enter it in its lifespan
    endpoint = RegistryEndpoint(never_started, authenticate=_anyone)
    async with Harness(f"starlette-{impl}", custom_endpoint=endpoint) as h:
        with pytest.raises(InvalidStatus) as info:
            await h.connect("carl", welcome=False)
        assert info.value.response.status_code == 503


async def _anyone(websocket: WebSocket) -> Identity:
    return Identity(key=websocket.query_params["user"])


async def test_cancelled_handler_unregisters_and_runs_on_disconnect(impl: str) -> None:
    entered = anyio.Event()

    async def on_message(conn: Connection, data: str | bytes) -> None:
        entered.set()
        await anyio.sleep_forever()  # a handler that never returns

    async with Harness(
        f"starlette-{impl}",
        on_message=on_message,
        drain_on_shutdown=False,
        graceful_timeout=0.3,  # uvicorn then cancels the stuck handler
    ) as h:
        client = await h.connect("dora")
        (conn,) = h.registry.lookup("dora")
        await client.send("hang")
        with anyio.fail_after(TIMEOUT):
            await entered.wait()
        await h.stop()
    assert conn.closed
    assert conn.close_code is None  # unregistered by the handler, not by the registry's shutdown
    assert h.disconnected == [conn]


async def test_plain_uvicorn_closes_websockets_with_1012_before_the_lifespan(impl: str) -> None:
    async with Harness(f"starlette-{impl}", drain_on_shutdown=False) as h:
        client = await h.connect("eve")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(h.stop)
            with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed) as closed:
                await client.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1012  # uvicorn's "service restart", not our 1001


async def test_transport_close_is_idempotent_and_tolerates_closed_sockets(impl: str) -> None:
    async with Harness(f"starlette-{impl}") as h:
        client = await h.connect("fay")
        (conn,) = h.registry.lookup("fay")
        transport = conn.transport
        assert isinstance(transport, StarletteTransport)
        assert "StarletteTransport" in repr(transport)
        await client.close()
        await h.wait_disconnected(1)
        await transport.close(CloseCode.NORMAL, "again")  # already closed: no error
        await transport.close(CloseCode.NORMAL, "and again")
        with pytest.raises(RuntimeError, match="close message"):
            await transport.send("late")


async def test_the_first_supported_subprotocol_is_selected(impl: str) -> None:
    async def authenticate(websocket: WebSocket) -> Identity | None:
        user = websocket.query_params["user"]
        return None if user == "bad" else Identity(key=user)

    registry = Registry()
    endpoint = RegistryEndpoint(
        registry, authenticate=authenticate, subprotocols=["chat.v2", "chat.v1"], refusal="close"
    )
    async with Harness(f"starlette-{impl}", registry=registry, custom_endpoint=endpoint) as h:
        client = await h.connect("gus", welcome=False, subprotocols=["chat.v1", "chat.v2"])
        assert client.subprotocol == "chat.v2"  # the endpoint's preference wins
        await client.close()
        other = await h.connect("gus", welcome=False, subprotocols=["chat.v1", "x"])
        assert other.subprotocol == "chat.v1"
        await other.close()
        # a browser-friendly refusal negotiates it too, so the page can read the 4401
        refused = await h.connect("bad", welcome=False, subprotocols=["chat.v1"])
        assert refused.subprotocol == "chat.v1"
        with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed) as closed:
            await refused.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CloseCode.UNAUTHORIZED


def test_transport_and_endpoint_check_their_arguments() -> None:
    with pytest.raises(TypeError, match="starlette WebSocket"):
        StarletteTransport(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Registry"):
        RegistryEndpoint(object(), authenticate=_anyone)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="authenticate"):
        RegistryEndpoint(Registry(), authenticate=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="subprotocols"):
        RegistryEndpoint(Registry(), authenticate=_anyone, subprotocols="chat")
    with pytest.raises(TypeError, match="on_message"):
        RegistryEndpoint(Registry(), authenticate=_anyone, on_message="x")  # type: ignore[arg-type]


def test_uvicorn_helpers_check_their_arguments() -> None:
    from wsregistry.adapters import uvicorn as wsr_uvicorn

    with pytest.raises(ValueError, match="workers"):
        wsr_uvicorn.run(object(), registry=Registry(), workers=2)
    with pytest.raises(TypeError, match="Registry"):
        wsr_uvicorn.Server(object(), registry=object())  # type: ignore[arg-type]
