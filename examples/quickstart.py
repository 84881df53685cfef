"""A 30-line tour of the registry on the in-memory backend, with recording transports.

Run it: ``python examples/quickstart.py``.
"""

from __future__ import annotations

import anyio

from wsregistry import Registry
from wsregistry.testing import RecordingTransport


async def main() -> None:
    async with Registry() as registry:
        tab1, tab2, other = RecordingTransport(), RecordingTransport(), RecordingTransport()
        alice_tab1 = await registry.connect(tab1, key="alice", groups={"room-1"})
        await registry.connect(tab2, key="alice")
        await registry.connect(other, key="bob", groups={"room-1"})

        print("to alice:", await registry.send("alice", {"type": "notice", "text": "hi"}))
        print(
            "room-1 except alice's tab 1:",
            await registry.broadcast("room msg", group="room-1", exclude=alice_tab1),
        )
        print("everyone:", await registry.broadcast({"type": "announcement"}))
        print(
            "alice online:",
            await registry.is_online("alice"),
            "tabs:",
            len(registry.lookup("alice")),
        )
        with anyio.fail_after(1):
            await tab1.wait_for(2)
            await other.wait_for(2)
        print("alice tab 1 got:", tab1.messages())
        print("bob got:", other.messages())
        print(registry.stats())


if __name__ == "__main__":
    anyio.run(main)
