"""Helpers for backend tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from tests.helpers import TIMEOUT
from wsregistry import Envelope, Key


async def until(check: Callable[[], Awaitable[bool]], *, within: float = TIMEOUT) -> None:
    """Wait until the async ``check()`` is true; fail after ``within`` seconds.

    For state held in a broker (presence, a reconnect), which offers no event to wait on.
    """
    with anyio.fail_after(within):
        while not await check():  # noqa: ASYNC110 - broker state has no event
            await anyio.sleep(0.005)


class FakeNode:
    """A :class:`~wsregistry.backends.LocalNode` without a registry, for backend unit tests.

    ``fail_counts`` makes the next ``local_count`` calls raise (a broken node).
    """

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.delivered: list[Envelope] = []
        self.connections: dict[str, Key] = {}
        self.groups: dict[str, int] = {}
        self.errors = 0
        self.fail_counts = 0

    def add(self, connection_id: str, key: Key) -> None:
        self.connections[connection_id] = key

    def remove(self, connection_id: str) -> None:
        self.connections.pop(connection_id, None)

    def deliver(self, envelope: Envelope) -> int:
        self.delivered.append(envelope)
        return 1

    def local_presence(self) -> list[tuple[str, Key]]:
        return list(self.connections.items())

    def local_keys(self) -> list[Key]:
        return list(dict.fromkeys(self.connections.values()))

    def local_groups(self) -> list[str]:
        return [group for group, count in self.groups.items() if count]

    def local_count(self, key: Key) -> int:
        if self.fail_counts:
            self.fail_counts -= 1
            raise RuntimeError("broken node: local_count failed")
        return sum(1 for other in self.connections.values() if other == key)

    def backend_error(self) -> None:
        self.errors += 1


async def require_core_shutdown() -> None:
    """xfail unless the registry calls ``Backend.flush()`` and can be entered twice.

    Both come with the core rebuild (issue 10); until it is merged, the tests of
    the registry-level shutdown bound and re-entry are expected to fail.
    """
    import pytest

    from wsregistry import MemoryBackend, Registry

    class Probe(MemoryBackend):
        flushed = 0

        async def flush(self) -> None:
            Probe.flushed += 1

    registry = Registry(backend=Probe())
    try:
        for _ in range(2):
            async with registry:
                pass
    except Exception as exc:
        pytest.xfail(f"needs the core rebuild (issue 10): re-entering a registry raised {exc!r}")
    if not Probe.flushed:
        pytest.xfail("needs the core rebuild (issue 10): the registry does not call flush()")
