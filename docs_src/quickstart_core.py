"""The registry in twenty lines: one process, in-memory backend, recording sockets."""

from __future__ import annotations

from typing import Any

import anyio

from wsregistry import Registry
from wsregistry.testing import RecordingTransport


async def main() -> list[Any]:
    async with Registry() as registry:  # leaving the block closes everyone with 1001
        laptop, phone, bob = RecordingTransport(), RecordingTransport(), RecordingTransport()
        await registry.connect(laptop, key="alice", groups={"staff"})
        await registry.connect(phone, key="alice")  # a key may hold many connections
        await registry.connect(bob, key="bob", groups={"staff"})

        await registry.send("alice", {"type": "notice", "text": "hi"})  # laptop and phone
        await registry.broadcast({"type": "meeting"}, group="staff")  # laptop and bob
        print(len(registry.lookup("alice")), await registry.is_online("bob"))  # 2 True

        with anyio.fail_after(1):  # writers run in the background: wait for the frames
            await laptop.wait_for(2)
        return laptop.messages()  # [{'type': 'notice', 'text': 'hi'}, {'type': 'meeting'}]


if __name__ == "__main__":
    anyio.run(main)
