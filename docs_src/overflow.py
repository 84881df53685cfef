"""Queues and overflow: what a stalled client costs, and what it cannot do to the others."""

from __future__ import annotations

import anyio

from wsregistry import CloseCode, Registry
from wsregistry.testing import RecordingTransport, StallingTransport


async def close_policy() -> None:
    # --8<-- [start:close]
    async with Registry(max_queue=3) as registry:  # default overflow policy: "close"
        healthy = RecordingTransport(nowait=True)
        stalled = StallingTransport()  # a peer that stopped reading
        await registry.connect(healthy, key="fast")
        slow = await registry.connect(stalled, key="slow")

        for n in range(10):
            await registry.broadcast({"n": n})  # never waits for the stalled peer

        assert len(healthy.sent) == 10  # the healthy peer got everything, in order
        assert slow.close_code == CloseCode.TRY_AGAIN_LATER  # 1013: closed, unregistered
        assert registry.stats().slow_consumer_closes == 1
        # --8<-- [end:close]
        with anyio.fail_after(1):
            assert await stalled.wait_closed() == CloseCode.TRY_AGAIN_LATER


async def drop_oldest_policy() -> list[object]:
    # --8<-- [start:drop_oldest]
    async with Registry(max_queue=3, overflow="drop_oldest") as registry:
        stalled = StallingTransport()
        await registry.connect(stalled, key="ticker")
        for n in range(10):
            await registry.send("ticker", {"price": n})
        # one message is in flight in the blocked send; the queue keeps the 3 newest
        stalled.release()
        with anyio.fail_after(1):
            await stalled.wait_for(4)
        assert registry.stats().dropped == 6
        return stalled.messages()  # [{'price': 0}, {'price': 7}, {'price': 8}, {'price': 9}]
        # --8<-- [end:drop_oldest]


async def main() -> None:
    await close_policy()
    assert await drop_oldest_policy() == [{"price": p} for p in (0, 7, 8, 9)]


if __name__ == "__main__":
    anyio.run(main)
