"""Semantic 2: per-connection order across send, broadcast and conn.send."""

from __future__ import annotations

import anyio
import pytest

from wsregistry import Connection, Registry
from wsregistry.testing import RecordingTransport

from ..helpers import TIMEOUT
from .transports import GatedTransport

pytestmark = pytest.mark.anyio


async def _mixed(registry: Registry, conn: Connection, start: int, count: int) -> list[str]:
    """Send ``count`` numbered frames to ``conn`` by rotating over the three ways."""
    expected = []
    for i in range(start, start + count):
        frame = f"m{i}"
        way = i % 4
        if way == 0:
            await registry.send(conn.key, frame)
        elif way == 1:
            await registry.broadcast(frame)
        elif way == 2:
            await registry.broadcast(frame, group="g")
        else:
            await conn.send(frame)
        expected.append(frame)
    return expected


@pytest.mark.parametrize("nowait", [False, True])
async def test_order_across_send_broadcast_and_conn_send(nowait: bool) -> None:
    async with Registry() as registry:
        transport = RecordingTransport(nowait=nowait)
        other = RecordingTransport(nowait=nowait)
        conn = await registry.connect(transport, key="k", groups=["g"])
        await registry.connect(other, key="other", groups=["g"])
        expected = await _mixed(registry, conn, 0, 400)
        with anyio.fail_after(TIMEOUT):
            await transport.wait_for(400)
        assert transport.sent == expected
        # the other connection saw exactly the broadcasts, in order
        assert other.sent == [f"m{i}" for i in range(400) if i % 4 in (1, 2)]


async def test_order_kept_while_queue_fills_and_drains_mid_stream() -> None:
    async with Registry() as registry:
        transport = GatedTransport()
        conn = await registry.connect(transport, key="k", groups=["g"])
        expected = await _mixed(registry, conn, 0, 20)  # fast path
        assert transport.via == ["nowait"] * 20

        transport.nowait_open = False  # socket buffer full: frames queue
        transport.close_gate()  # and the writer waits
        expected += await _mixed(registry, conn, 20, 20)
        assert conn.queued >= 19

        transport.nowait_open = True  # buffer has room again, but the queue is not empty:
        expected += await _mixed(registry, conn, 40, 20)  # these must queue behind
        assert len(transport.sent) == 20

        transport.open_gate()  # the writer drains while more frames arrive
        expected += await _mixed(registry, conn, 60, 40)
        with anyio.fail_after(TIMEOUT):
            await transport.wait_for(100)
        assert transport.sent == expected
        assert "send" in transport.via

        # once drained, the fast path is used again, still in order
        with anyio.fail_after(TIMEOUT):
            while conn.queued or registry.stats().queued:
                await transport.wait_for(len(transport.sent) + 1)
        expected += await _mixed(registry, conn, 100, 10)
        await _wait_writer_gone(conn)
        assert transport.sent == expected
        assert transport.via[-10:] == ["nowait"] * 10


async def test_fast_path_refusal_then_acceptance_keeps_order() -> None:
    # send_nowait alternately refuses and accepts: every refusal starts a writer
    async with Registry() as registry:
        transport = GatedTransport()
        conn = await registry.connect(transport, key="k")
        expected = []
        for i in range(300):
            transport.nowait_open = i % 3 != 0
            await conn.send(str(i))
            expected.append(str(i))
            if i % 3 == 0:
                await _wait_writer_gone(conn)  # let the fast path take over again
        with anyio.fail_after(TIMEOUT):
            await transport.wait_for(300)
        assert transport.sent == expected
        assert set(transport.via) == {"nowait", "send"}


async def _wait_writer_gone(conn: Connection) -> None:
    with anyio.fail_after(TIMEOUT):
        while not conn.idle:  # noqa: ASYNC110 - polled state, no event
            await anyio.sleep(0.001)
