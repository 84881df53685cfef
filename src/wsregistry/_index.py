"""Pure, synchronous bookkeeping: key -> connections, group -> connections.

No awaits, no I/O. Connections are stored in insertion-ordered dicts used as
sets, so iteration order is connection order and removal is O(1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._types import Key

if TYPE_CHECKING:
    from collections.abc import Iterator

C = TypeVar("C")


class Index(Generic[C]):
    """Who is connected, by key and by group, in this process."""

    __slots__ = ("_all", "_by_group", "_by_key")

    def __init__(self) -> None:
        self._all: dict[C, None] = {}
        self._by_key: dict[Key, dict[C, None]] = {}
        self._by_group: dict[str, dict[C, None]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def __contains__(self, conn: object) -> bool:
        return conn in self._all

    def add(self, conn: C, key: Key) -> bool:
        """Register ``conn`` under ``key``. Returns ``True`` if it is the key's first."""
        self._all[conn] = None
        members = self._by_key.get(key)
        if members is None:
            self._by_key[key] = {conn: None}
            return True
        members[conn] = None
        return False

    def remove(
        self, conn: C, key: Key, groups: frozenset[str] | set[str]
    ) -> tuple[bool, list[str]]:
        """Forget ``conn``. Returns (key now empty, groups now empty)."""
        self._all.pop(conn, None)
        key_emptied = _discard(self._by_key, key, conn)
        emptied = [group for group in groups if _discard(self._by_group, group, conn)]
        return key_emptied, emptied

    def join(self, conn: C, group: str) -> bool:
        """Add ``conn`` to ``group``. Returns ``True`` if it is the group's first member."""
        members = self._by_group.get(group)
        if members is None:
            self._by_group[group] = {conn: None}
            return True
        members[conn] = None
        return False

    def leave(self, conn: C, group: str) -> bool:
        """Remove ``conn`` from ``group``. Returns ``True`` if the group is now empty."""
        return _discard(self._by_group, group, conn)

    def of_key(self, key: Key) -> tuple[C, ...]:
        """A snapshot of ``key``'s connections, oldest first."""
        members = self._by_key.get(key)
        return tuple(members) if members else ()

    def of_group(self, group: str) -> tuple[C, ...]:
        """A snapshot of ``group``'s members, oldest first."""
        members = self._by_group.get(group)
        return tuple(members) if members else ()

    def everyone(self) -> tuple[C, ...]:
        """A snapshot of every connection, oldest first."""
        return tuple(self._all)

    def count_of_key(self, key: Key) -> int:
        """How many connections ``key`` holds here."""
        members = self._by_key.get(key)
        return len(members) if members else 0

    def keys(self) -> Iterator[Key]:
        """Keys with at least one connection."""
        return iter(tuple(self._by_key))

    def groups(self) -> Iterator[str]:
        """Groups with at least one member."""
        return iter(tuple(self._by_group))

    @property
    def key_count(self) -> int:
        """Number of distinct keys."""
        return len(self._by_key)

    @property
    def group_count(self) -> int:
        """Number of non-empty groups."""
        return len(self._by_group)


def _discard(table: dict[Any, dict[C, None]], name: Key, conn: C) -> bool:
    members = table.get(name)
    if members is None or conn not in members:
        return False
    del members[conn]
    if members:
        return False
    del table[name]
    return True
