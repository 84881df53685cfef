"""Testing your own code with wsregistry.testing: no sockets, no server."""

from __future__ import annotations

import anyio

from wsregistry import CloseCode, Registry
from wsregistry.testing import FailingTransport, RecordingTransport, StallingTransport


# --8<-- [start:app]
async def post_message(registry: Registry, room: str, author: str, text: str) -> int:
    """The application code under test."""
    return await registry.broadcast({"room": room, "author": author, "text": text}, group=room)
    # --8<-- [end:app]


# --8<-- [start:test]
async def test_a_dead_and_a_stalled_peer_do_not_stop_the_room() -> None:
    async with Registry(max_queue=8) as registry:
        reader = RecordingTransport()
        dead = FailingTransport(fail_after=0)  # raises on the first frame: a vanished peer
        stalled = StallingTransport()  # never reads
        conns = {
            key: await registry.connect(transport, key=key, groups={"room:1"})
            for key, transport in (("ann", reader), ("bob", dead), ("cy", stalled))
        }

        for n in range(20):
            await post_message(registry, "room:1", "ann", f"message {n}")

        with anyio.fail_after(5):
            await reader.wait_for(20)  # the healthy reader got all 20...
            await conns["bob"].wait_closed()
            await conns["cy"].wait_closed()
        assert [m["text"] for m in reader.messages()] == [f"message {n}" for n in range(20)]
        assert conns["bob"].close_code == CloseCode.INTERNAL_ERROR  # 1011: its send failed
        assert conns["cy"].close_code == CloseCode.TRY_AGAIN_LATER  # 1013: queue overflowed
        assert registry.members("room:1") == (conns["ann"],)  # the others are gone
        assert registry.stats().queued == 0  # and nothing of theirs is left behind
        # --8<-- [end:test]


async def main() -> None:
    await test_a_dead_and_a_stalled_peer_do_not_stop_the_room()


if __name__ == "__main__":
    anyio.run(main)
