"""The drop-in manager across processes: two servers share users through Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect

from wsregistry import Registry
from wsregistry.backends.redis import RedisBackend
from wsregistry.compat import connection_manager
from wsregistry.compat.connection_manager import ConnectionManager, get_websocket_manager

from ..helpers import TIMEOUT
from ..servers import serve
from .test_connection_manager import old_style_app

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn and redis-py


@pytest.fixture
def namespace() -> str:
    return "wsrtest-compat-" + uuid.uuid4().hex[:12]


@pytest.fixture
def fresh_singleton() -> Iterator[None]:
    get_websocket_manager.cache_clear()
    yield
    get_websocket_manager.cache_clear()


def redis_manager(namespace: str) -> ConnectionManager:
    return ConnectionManager(Registry(backend=RedisBackend(REDIS_URL, namespace=namespace)))


async def test_a_second_worker_notifies_users_of_the_first(namespace: str) -> None:
    worker_a, worker_b = redis_manager(namespace), redis_manager(namespace)
    async with (
        serve(old_style_app(worker_a)) as host_a,
        serve(old_style_app(worker_b)) as host_b,
        httpx.AsyncClient(base_url=f"http://{host_b}") as http_b,
        connect(f"ws://{host_a}/ws/alice") as alice,
    ):
        with anyio.fail_after(TIMEOUT):
            assert json.loads(await alice.recv()) == {"hello": "alice"}

        async def receive() -> Any:
            with anyio.fail_after(TIMEOUT):
                return json.loads(await alice.recv())

        # alice is on worker A only; worker B's manager reaches her through Redis.
        assert (await http_b.get("/connections/alice")).json()["count"] == 0
        assert (await http_b.post("/notify/alice")).json() == {"sent": True}
        assert await receive() == {"message": "hello"}
        assert (await http_b.post("/mfa/alice")).json() == {"sent": True}
        assert await receive() == {"message": "MFA_REQUIRED"}
        assert (await http_b.post("/send/alice", json={"n": 1})).json() == {"queued": 0}
        assert await receive() == {"n": 1}  # queued on worker A, not counted by B
        assert (await http_b.post("/mfa/bob")).status_code == 400
        assert (await http_b.post("/notify/bob")).json() == {"sent": False}


def test_get_websocket_manager_is_cached_and_reads_the_redis_url(
    monkeypatch: pytest.MonkeyPatch, fresh_singleton: None, namespace: str
) -> None:
    monkeypatch.delenv(connection_manager.REDIS_URL_ENV, raising=False)
    memory = get_websocket_manager()
    assert get_websocket_manager() is memory
    assert type(memory.registry.backend).__name__ == "MemoryBackend"

    get_websocket_manager.cache_clear()
    monkeypatch.setenv(connection_manager.REDIS_URL_ENV, REDIS_URL)
    monkeypatch.setenv(connection_manager.REDIS_NAMESPACE_ENV, namespace)
    backend = get_websocket_manager().registry.backend
    assert isinstance(backend, RedisBackend)
    assert backend.namespace == namespace
