"""Keys, connections and sessions."""

from __future__ import annotations

import anyio
from anyio.abc import ObjectReceiveStream

from wsregistry import Registry, Transport
from wsregistry.testing import RecordingTransport


# --8<-- [start:many]
async def many_connections(registry: Registry) -> None:
    laptop = await registry.connect(RecordingTransport(), key=42, metadata={"device": "laptop"})
    phone = await registry.connect(RecordingTransport(), key=42, metadata={"device": "phone"})
    assert registry.lookup(42) == (laptop, phone)  # this process's connections, oldest first
    assert laptop.id != phone.id  # each connection has its own cluster-wide id
    assert await registry.send(42, {"type": "ping"}) == 2  # queued to both

    await registry.disconnect(laptop)  # removes exactly this connection...
    await registry.disconnect(laptop)  # ...and is idempotent
    assert registry.lookup(42) == (phone,)
    assert laptop.closed
    assert not phone.closed
    # --8<-- [end:many]


# --8<-- [start:session]
async def handle_socket(
    registry: Registry, transport: Transport, inbox: ObjectReceiveStream[str], user_id: int
) -> None:
    """One client's whole life: registered while it is connected, whatever ends it."""
    async with registry.session(transport, key=user_id, groups={"lobby"}) as conn:
        await conn.send({"type": "welcome", "connection": conn.id})
        async for text in inbox:  # your framework's receive loop
            await registry.broadcast({"from": user_id, "text": text}, group="lobby", exclude=conn)
    # here the connection is unregistered: normal end, exception or cancellation alike
    # --8<-- [end:session]


async def main() -> None:
    async with Registry() as registry:
        await many_connections(registry)

        watcher = RecordingTransport()
        await registry.connect(watcher, key="watcher", groups={"lobby"})
        client = RecordingTransport()
        send_stream, receive_stream = anyio.create_memory_object_stream[str](10)
        async with anyio.create_task_group() as tg:
            tg.start_soon(handle_socket, registry, client, receive_stream, 7)
            with anyio.fail_after(1):
                await client.wait_for(1)  # the welcome frame
                assert registry.lookup(7)
                await send_stream.send("hello")
                await watcher.wait_for(1)
                await send_stream.aclose()  # the client leaves
        assert registry.lookup(7) == ()
        assert watcher.messages() == [{"from": 7, "text": "hello"}]


if __name__ == "__main__":
    anyio.run(main)
