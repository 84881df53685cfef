"""The drop-in really drops in: mocked sockets, substituted managers, the seed's exact
answers and log lines, calls from worker threads' own loops, a TestClient per test."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from typing import Any
from unittest import mock

import anyio
import pytest
from fastapi import FastAPI, HTTPException, WebSocket, WebSocketDisconnect
from fastapi.testclient import TestClient

from wsregistry.compat import connection_manager as cm
from wsregistry.compat.connection_manager import ConnectionManager, notify_frontend

from ..helpers import TIMEOUT
from ..servers import serve

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # FastAPI apps and their test suites; lazy start is asyncio-only


# -- a test suite that mocks the WebSocket ----------------------------------------------


async def test_a_mocked_socket_is_accepted_and_written_through_its_own_send_json() -> None:
    manager = ConnectionManager()
    websocket = mock.AsyncMock()
    await manager.connect("u1", websocket)
    websocket.accept.assert_awaited_once()
    assert manager.get_connection("u1") is websocket
    assert "u1" in manager.active_connections

    assert await manager.send_message("u1", {"type": "notice", "n": 1}) == 1
    websocket.send_json.assert_awaited_once_with({"type": "notice", "n": 1})
    assert await manager.broadcast({"type": "all"}) == 1
    websocket.send_json.assert_awaited_with({"type": "all"})
    await manager.send_message("u1", "plain text")
    websocket.send_text.assert_awaited_once_with("plain text")

    assert await notify_frontend("u1", manager, {"message": "MFA_REQUIRED"}) is True
    websocket.send_json.assert_awaited_with({"message": "MFA_REQUIRED"})
    manager.disconnect("u1")
    assert manager.get_connection("u1") is None
    await manager.aclose()


async def test_anything_with_the_methods_is_a_socket_and_the_rest_is_refused_before_accept() -> (
    None
):
    manager = ConnectionManager()

    class HalfSocket:
        accept = mock.AsyncMock()
        send_text = mock.AsyncMock()

    half = HalfSocket()
    with pytest.raises(TypeError, match=r"HalfSocket has no send_bytes, send_json, close"):
        await manager.connect("u2", half)  # type: ignore[arg-type]
    half.accept.assert_not_awaited()

    good = mock.AsyncMock()
    with pytest.raises(TypeError):
        await manager.connect(1.5, good)  # type: ignore[arg-type]
    good.accept.assert_not_awaited()
    assert not manager.registry.running  # nothing accepted, nothing started


async def test_a_real_socket_whose_send_json_a_test_patched_is_written_through_the_patch() -> None:
    manager = ConnectionManager()
    app = FastAPI(lifespan=manager.lifespan)
    seen: list[Any] = []

    @app.websocket("/ws/{user_id}")
    async def endpoint(websocket: WebSocket, user_id: str) -> None:
        original = websocket.send_json

        async def spy(data: Any, mode: str = "text") -> None:
            seen.append(data)
            await original(data)

        websocket.send_json = spy  # type: ignore[method-assign]
        await manager.connect(user_id, websocket)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            manager.disconnect(user_id)

    def run() -> None:
        with TestClient(app) as client, client.websocket_connect("/ws/ann") as ws:
            client.portal.call(manager.send_message, "ann", {"n": 1})
            assert ws.receive_json() == {"n": 1}

    await anyio.to_thread.run_sync(run)
    assert seen == [{"n": 1}]


# -- notify_frontend: the seed's answers, any manager --------------------------------------


@pytest.mark.parametrize("user_id", ["alice", 42])
async def test_the_mfa_refusal_is_the_seeds_exactly(user_id: str | int) -> None:
    manager = ConnectionManager()
    with pytest.raises(HTTPException) as refused:
        await notify_frontend(user_id, manager, {"message": "MFA_REQUIRED"})
    assert refused.value.status_code == 400
    assert refused.value.detail == f"No WebSocket connection for user {user_id}"
    async with manager.lifespan():
        with pytest.raises(HTTPException) as refused:
            await notify_frontend(user_id, manager, {"message": "MFA_REQUIRED"})
        assert refused.value.detail == f"No WebSocket connection for user {user_id}"
        assert await notify_frontend(user_id, manager, {"message": "hello"}) is False


async def test_notify_frontend_works_with_a_mocked_manager() -> None:
    manager = mock.MagicMock()
    manager.get_connection.return_value = None
    with pytest.raises(HTTPException) as refused:
        await notify_frontend("bob", manager, {"message": "MFA_REQUIRED"})
    assert refused.value.detail == "No WebSocket connection for user bob"
    assert await notify_frontend("bob", manager, {"message": "hello"}) is False

    manager = mock.MagicMock()
    manager.get_connection.return_value = mock.AsyncMock()
    manager.send_message = mock.AsyncMock()
    assert await notify_frontend("bob", manager, {"message": "MFA_REQUIRED"}) is True
    manager.send_message.assert_awaited_once_with("bob", {"message": "MFA_REQUIRED"})


async def test_notify_frontend_works_with_a_substituted_manager_class() -> None:
    class WebSocketManager:  # the application's own (hand-written) manager
        def __init__(self) -> None:
            self.active_connections: dict[str, Any] = {}
            self.sent: list[tuple[str, Any]] = []

        def get_connection(self, user_id: str) -> Any:
            return self.active_connections.get(user_id)

        async def send_message(self, user_id: str, message: Any) -> None:
            self.sent.append((user_id, message))

    substitute = WebSocketManager()
    assert await notify_frontend("c", substitute, {"message": "hello"}) is False
    substitute.active_connections["c"] = object()
    assert await notify_frontend("c", substitute, {"message": "MFA_REQUIRED"}) is True
    assert substitute.sent == [("c", {"message": "MFA_REQUIRED"})]

    class Renamed(ConnectionManager):  # or a subclass of the drop-in under the old name
        pass

    renamed = Renamed()
    websocket = mock.AsyncMock()
    await renamed.connect("d", websocket)
    assert await notify_frontend("d", renamed, {"message": "hello"}) is True
    websocket.send_json.assert_awaited_once_with({"message": "hello"})
    await renamed.aclose()


# -- log lines ------------------------------------------------------------------------------


async def test_connect_and_disconnect_are_logged_like_the_seed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wsregistry.compat.connection_manager")
    manager = ConnectionManager()
    await manager.connect(7, mock.AsyncMock())
    manager.disconnect(7)
    lines = [
        r.getMessage() for r in caplog.records if r.name == "wsregistry.compat.connection_manager"
    ]
    assert lines == ["WebSocket connected for user 7", "WebSocket disconnected for user 7"]

    with mock.patch.object(cm, "logger") as patched:  # the app patches the module's logger
        await manager.connect("p", mock.AsyncMock())
    patched.info.assert_called_once_with("WebSocket connected for user %s", "p")

    own = mock.MagicMock(spec=logging.Logger)
    custom = ConnectionManager(logger=own)
    await custom.connect("q", mock.AsyncMock())
    own.info.assert_called_once_with("WebSocket connected for user %s", "q")
    await manager.aclose()
    await custom.aclose()


# -- worker threads with their own event loop (needs the core's cross-loop calls) -------------


def _app(manager: ConnectionManager, *, lifespan: bool) -> FastAPI:
    app = FastAPI(lifespan=manager.lifespan) if lifespan else FastAPI()

    @app.websocket("/ws/{user_id}")
    async def endpoint(websocket: WebSocket, user_id: str) -> None:
        await manager.connect(user_id, websocket)
        await websocket.send_json({"hello": user_id})
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            manager.disconnect(user_id)

    @app.post("/mfa/{user_id}")
    async def mfa(user_id: str) -> dict[str, bool]:
        return {"sent": await notify_frontend(user_id, manager, {"message": "MFA_REQUIRED"})}

    return app


def _in_worker_thread(call: Any) -> Any:
    """Run ``asyncio.run(call())`` in a new thread, like a job runner; return or raise."""
    result: list[Any] = []
    error: list[BaseException] = []

    def work() -> None:
        try:
            result.append(asyncio.run(call()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "the worker's call hung"
    if error:
        raise error[0]
    return result[0]


@pytest.mark.parametrize(
    ("lifespan", "backend"),
    [
        (True, "memory"),
        (False, "memory"),
        pytest.param(True, "redis", marks=pytest.mark.redis),
    ],
    ids=["lifespan", "lazy", "lifespan-redis"],
)
async def test_notify_from_a_worker_threads_own_loop_delivers_or_returns_false(
    lifespan: bool, backend: str
) -> None:
    from websockets.asyncio.client import connect

    if backend == "redis":
        from wsregistry import Registry
        from wsregistry.backends.redis import RedisBackend

        namespace = "wsrtest-compat-" + uuid.uuid4().hex[:12]
        manager = ConnectionManager(
            Registry(backend=RedisBackend("redis://127.0.0.1:6379/0", namespace=namespace))
        )
    else:
        manager = ConnectionManager()
    # nobody connected yet, nothing running (lazy): the worker finds nobody, starts nothing
    assert (
        await anyio.to_thread.run_sync(
            _in_worker_thread, lambda: notify_frontend("amy", manager, {"message": "x"})
        )
        is False
    )
    try:
        async with (
            serve(_app(manager, lifespan=lifespan)) as host,
            connect(f"ws://{host}/ws/amy") as amy,
        ):
            with anyio.fail_after(TIMEOUT):
                assert json.loads(await amy.recv()) == {"hello": "amy"}
            for n in range(3):
                sent = await anyio.to_thread.run_sync(
                    _in_worker_thread,
                    lambda n=n: notify_frontend("amy", manager, {"message": "job", "n": n}),
                )
                assert sent is True
                queued = await anyio.to_thread.run_sync(
                    _in_worker_thread, lambda n=n: manager.send_message("amy", {"direct": n})
                )
                assert queued == 1
            with anyio.fail_after(TIMEOUT):
                got = [json.loads(await amy.recv()) for _ in range(6)]
            assert got == [m for n in range(3) for m in ({"message": "job", "n": n}, {"direct": n})]
            assert (
                await anyio.to_thread.run_sync(
                    _in_worker_thread, lambda: notify_frontend("nobody", manager, {"m": 1})
                )
                is False
            )
            with pytest.raises(HTTPException) as refused:
                await anyio.to_thread.run_sync(
                    _in_worker_thread,
                    lambda: notify_frontend("nobody", manager, {"message": "MFA_REQUIRED"}),
                )
            assert refused.value.detail == "No WebSocket connection for user nobody"
            assert manager.registry.running  # the workers did not damage it
            assert await manager.is_online("amy")
    finally:
        await manager.aclose()


# -- a TestClient per test (needs the core's restartable registry) -----------------------------

_module_manager = ConnectionManager()  # module-level, as apps declare it
_lifespan_app = _app(_module_manager, lifespan=True)
_lazy_manager = ConnectionManager()
_lazy_app = _app(_lazy_manager, lifespan=False)


def _one_test_with_its_own_client(app: FastAPI, manager: ConnectionManager, user: str) -> None:
    with TestClient(app) as client:
        with client.websocket_connect(f"/ws/{user}") as ws:
            assert ws.receive_json() == {"hello": user}
            assert client.post(f"/mfa/{user}").json() == {"sent": True}
            assert ws.receive_json() == {"message": "MFA_REQUIRED"}
        response = client.post("/mfa/ghost")
        assert response.status_code == 400
        assert response.json() == {"detail": "No WebSocket connection for user ghost"}


@pytest.mark.parametrize("times", [2, 20])
@pytest.mark.parametrize("kind", ["lifespan", "lazy"])
def test_a_test_client_per_test(times: int, kind: str) -> None:
    app, manager = (
        (_lifespan_app, _module_manager)
        if kind == "lifespan"
        else (
            _lazy_app,
            _lazy_manager,
        )
    )
    for n in range(times):
        _one_test_with_its_own_client(app, manager, f"user{n}")
