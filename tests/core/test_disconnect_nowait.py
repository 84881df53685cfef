from __future__ import annotations

import pytest

from wsregistry import Registry
from wsregistry.testing import RecordingTransport

pytestmark = pytest.mark.anyio


async def test_disconnect_nowait_removes_exactly_that_connection() -> None:
    async with Registry() as registry:
        old = await registry.connect(RecordingTransport(), key="alice", groups={"g"})
        new = await registry.connect(RecordingTransport(), key="alice", groups={"g"})
        registry.disconnect_nowait(old)
        registry.disconnect_nowait(old)  # idempotent
        assert old.closed
        assert registry.lookup("alice") == (new,)
        assert registry.members("g") == (new,)
        assert await registry.send("alice", "hi") == 1
    registry.disconnect_nowait(new)  # works after close too


async def test_disconnect_nowait_rejects_non_connections() -> None:
    async with Registry() as registry:
        with pytest.raises(TypeError, match="takes a Connection"):
            registry.disconnect_nowait("alice")  # type: ignore[arg-type]
