"""A custom serializer, and the all-or-nothing rule for messages that cannot be encoded."""

from __future__ import annotations

import datetime
import json
from typing import Any

import anyio

from wsregistry import Registry, SerializationError
from wsregistry.testing import RecordingTransport


# --8<-- [start:serializer]
def _default(value: object) -> object:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def serialize(message: Any) -> str:
    """JSON that also knows datetimes; called once per send/broadcast."""
    return json.dumps(message, default=_default, separators=(",", ":"))
    # --8<-- [end:serializer]


async def main() -> None:
    async with Registry(serializer=serialize) as registry:
        tab = RecordingTransport(nowait=True)
        await registry.connect(tab, key="alice")
        at = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)
        # --8<-- [start:errors]
        await registry.send("alice", {"at": at})  # '{"at":"2026-01-01T12:00:00+00:00"}'
        try:
            await registry.broadcast({"oops": object()})
        except SerializationError as exc:  # also a TypeError; raised before anything is sent
            print(exc)
        await registry.send("alice", b"\x00\x01")  # bytes: a binary frame, not serialised
        await registry.send("alice", "plain text")  # str: a text frame, not serialised
        # --8<-- [end:errors]
        assert tab.sent == ['{"at":"2026-01-01T12:00:00+00:00"}', b"\x00\x01", "plain text"]


if __name__ == "__main__":
    anyio.run(main)
