"""Groups: rooms, topics, roles."""

from __future__ import annotations

import anyio

from wsregistry import Registry
from wsregistry.testing import RecordingTransport


async def main() -> None:
    async with Registry() as registry:
        # --8<-- [start:groups]
        ann, ben = RecordingTransport(nowait=True), RecordingTransport(nowait=True)
        ann_conn = await registry.connect(ann, key="ann", groups={"room:1", "admins"})
        ben_conn = await registry.connect(ben, key="ben")
        await registry.join(ben_conn, "room:1")
        await registry.join(ben_conn, "room:1")  # idempotent
        assert registry.members("room:1") == (ann_conn, ben_conn)
        assert ben_conn.groups == {"room:1"}

        # everyone in the room except the sender's own connection
        assert await registry.broadcast("ann: hi", group="room:1", exclude=ann_conn) == 1

        await registry.leave(ben_conn, "room:1")
        assert await registry.broadcast("anyone?", group="room:1") == 1  # only ann now
        await registry.disconnect(ann_conn)  # leaves every group at once
        assert registry.members("room:1") == ()
        # --8<-- [end:groups]
        assert ben.sent == ["ann: hi"]
        assert ann.sent == ["anyone?"]
        assert registry.stats().groups == 0


if __name__ == "__main__":
    anyio.run(main)
