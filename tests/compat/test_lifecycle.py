"""The manager's lifecycle without a server: lifespan on asyncio and trio, lazy start on asyncio."""

from __future__ import annotations

import pytest

from wsregistry import RegistryNotStarted
from wsregistry.compat.connection_manager import ConnectionManager, notify_frontend

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


async def test_lazy_start_needs_asyncio(anyio_backend: str) -> None:
    manager = ConnectionManager()
    if anyio_backend == "trio":
        with pytest.raises(RegistryNotStarted, match="send_message"):
            await manager.send_message("alice", {})
        return
    assert await manager.send_message("alice", {}) == 0
    assert manager.registry.running
    await manager.aclose()
    assert not manager.registry.running


def test_bad_registry_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Registry"):
        ConnectionManager(registry="redis://")  # type: ignore[arg-type]
