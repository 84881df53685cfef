"""A custom Backend over a publish/subscribe broker.

``Broker`` stands in for the real thing (NATS, Redis, Postgres LISTEN/NOTIFY...):
named channels with subscribers, and a shared presence table. The backend shows
the pattern every broker backend follows: one channel per key and per group,
subscribed while this node has a local member, plus one channel for broadcasts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable

import anyio

from wsregistry import (
    Backend,
    BackendHealth,
    Envelope,
    EnvelopeKind,
    Key,
    LocalNode,
    Registry,
)
from wsregistry.testing import RecordingTransport

Deliver = Callable[[Envelope], int]


class Broker:
    """An in-process stand-in for a message broker."""

    def __init__(self) -> None:
        self.subscribers: defaultdict[str, dict[str, Deliver]] = defaultdict(dict)
        self.presence: defaultdict[str, Counter[Key]] = defaultdict(Counter)  # node -> counts

    def publish(self, channel: str, envelope: Envelope) -> None:
        for node_id, deliver in list(self.subscribers[channel].items()):
            if node_id != envelope.origin:  # never hand a node its own envelope
                deliver(envelope)


# --8<-- [start:backend]
def channel_of(kind: EnvelopeKind, target: Key | None) -> str:
    if kind is EnvelopeKind.KEY:
        return f"key:{target!r}"  # repr keeps 42 and "42" apart
    if kind is EnvelopeKind.GROUP:
        return f"group:{target}"
    return "all"  # broadcasts, and sends to one connection id (any node may hold it)


class BrokerBackend(Backend):
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._node: LocalNode | None = None

    @property
    def _node_id(self) -> str:
        return self._started().node_id

    def _started(self) -> LocalNode:
        if self._node is None:
            raise RuntimeError("BrokerBackend used before start()")
        return self._node

    def _subscribe(self, channel: str) -> None:
        node = self._started()
        self._broker.subscribers[channel][node.node_id] = node.deliver

    def _unsubscribe(self, channel: str) -> None:
        self._broker.subscribers[channel].pop(self._node_id, None)

    async def start(self, node: LocalNode) -> None:
        self._node = node
        self._subscribe("all")

    async def aclose(self) -> None:
        if self._node is None:
            return  # idempotent
        for subscribers in self._broker.subscribers.values():
            subscribers.pop(self._node_id, None)
        self._broker.presence.pop(self._node_id, None)
        self._node = None

    async def publish(self, envelope: Envelope) -> None:
        self._broker.publish(channel_of(envelope.kind, envelope.target), envelope)

    async def connection_added(self, connection_id: str, key: Key, *, first_of_key: bool) -> None:
        self._broker.presence[self._node_id][key] += 1
        if first_of_key:  # the first local connection of the key: start listening
            self._subscribe(channel_of(EnvelopeKind.KEY, key))

    def connection_removed(self, connection_id: str, key: Key, *, last_of_key: bool) -> None:
        counts = self._broker.presence[self._node_id]
        counts[key] -= 1
        if last_of_key:  # the last one left: stop listening, forget the key
            del counts[key]
            self._unsubscribe(channel_of(EnvelopeKind.KEY, key))

    async def group_joined(self, group: str, *, first_of_group: bool) -> None:
        if first_of_group:
            self._subscribe(channel_of(EnvelopeKind.GROUP, group))

    def group_left(self, group: str, *, last_of_group: bool) -> None:
        if last_of_group:
            self._unsubscribe(channel_of(EnvelopeKind.GROUP, group))

    async def presence_count(self, key: Key) -> int:
        return sum(counts[key] for counts in self._broker.presence.values())

    async def online_keys(self) -> frozenset[Key]:
        return frozenset(key for counts in self._broker.presence.values() for key in counts)

    def health(self) -> BackendHealth:
        return BackendHealth(name="broker", connected=self._node is not None)
        # --8<-- [end:backend]


async def main() -> Broker:
    # --8<-- [start:usage]
    broker = Broker()
    async with (
        Registry(backend=BrokerBackend(broker)) as node_a,
        Registry(backend=BrokerBackend(broker)) as node_b,
    ):
        alice = RecordingTransport(nowait=True)
        conn = await node_a.connect(alice, key="alice", groups={"room"})
        assert await node_b.send("alice", "to alice") == 0  # delivered on node_a
        assert await node_b.broadcast("to the room", group="room") == 0
        assert await node_b.broadcast("to everyone") == 0
        assert await node_b.online_count("alice") == 1
        assert await node_b.online_keys() == {"alice"}
        assert alice.sent == ["to alice", "to the room", "to everyone"]
        # --8<-- [end:usage]

        await node_a.disconnect(conn)
        assert not await node_b.is_online("alice")
        assert conn.key not in broker.presence[node_a.node_id]
    return broker


if __name__ == "__main__":
    anyio.run(main)
