"""The manager's lifecycle without a server: lifespan on asyncio and trio, lazy start on asyncio."""

from __future__ import annotations

import pytest

from wsregistry import RegistryNotStarted
from wsregistry.compat.connection_manager import ConnectionManager, notify_frontend


class FakeSocket:
    """Behaves like a Starlette WebSocket as far as the manager is concerned."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    async def accept(self) -> None:
        pass

    async def send_text(self, data: str) -> None:
        self.sent.append(data)

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    async def send_json(self, data: object) -> None:
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


pytestmark = pytest.mark.anyio


async def test_lifespan_runs_the_registry(anyio_backend: str) -> None:
    manager = ConnectionManager()
    async with manager.lifespan(object()):
        assert manager.registry.running
        assert await manager.send_message("alice", {"n": 1}) == 0
        assert await manager.broadcast({"n": 2}) == 0
        assert await notify_frontend("alice", manager, {"message": "hello"}) is False
        assert not await manager.is_online("alice")
    assert not manager.registry.running


async def test_calls_before_any_connection_start_nothing_and_find_nobody(
    anyio_backend: str,
) -> None:
    manager = ConnectionManager()
    assert await manager.send_message("alice", {}) == 0
    assert await manager.broadcast({}) == 0
    assert not await manager.is_online("alice")
    assert await notify_frontend("alice", manager, {"message": "hello"}) is False
    assert not manager.registry.running  # nothing was bound to this (maybe short-lived) loop
    await manager.aclose()  # nothing to stop: fine


async def test_lazy_start_on_connect_needs_asyncio(anyio_backend: str) -> None:
    manager = ConnectionManager()
    socket = FakeSocket()
    if anyio_backend == "trio":
        with pytest.raises(RegistryNotStarted, match="connect"):
            await manager.connect("alice", socket)  # type: ignore[arg-type]
        return
    await manager.connect("alice", socket)  # type: ignore[arg-type]
    assert manager.registry.running
    await manager.aclose()
    assert not manager.registry.running


def test_bad_registry_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Registry"):
        ConnectionManager(registry="redis://")  # type: ignore[arg-type]
