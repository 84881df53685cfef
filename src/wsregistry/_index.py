"""Pure, synchronous bookkeeping: id -> outbox, key -> outboxes, group -> outboxes.

No awaits, no I/O. A key with one connection maps straight to its outbox (the
common case: one tab per user); a key with more, and every group, maps to an
insertion-ordered dict used as a set, so iteration order is connection order
and removal is O(1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._outbox import Outbox
    from ._types import Key

_Members = dict["Outbox", None]


class Index:
    """Who is connected, by id, by key and by group, in this process."""

    __slots__ = ("_by_group", "_by_id", "_by_key")

    def __init__(self) -> None:
        self._by_id: dict[str, Outbox] = {}
        self._by_key: dict[Key, Outbox | _Members] = {}
        self._by_group: dict[str, _Members] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, connection_id: str) -> Outbox | None:
        """The outbox of ``connection_id``, if it is registered here."""
        return self._by_id.get(connection_id)

    def add(self, outbox: Outbox) -> bool:
        """Register ``outbox`` under its key. Returns ``True`` if it is the key's first."""
        self._by_id[outbox.id] = outbox
        key = outbox.key
        entry = self._by_key.get(key)
        if entry is None:
            self._by_key[key] = outbox
            return True
        if isinstance(entry, dict):
            entry[outbox] = None
        else:
            self._by_key[key] = {entry: None, outbox: None}
        return False

    def remove(self, outbox: Outbox) -> tuple[bool, list[str]]:
        """Forget ``outbox``. Returns (its key is now empty, its groups now empty)."""
        if self._by_id.pop(outbox.id, None) is None:
            return False, []
        key = outbox.key
        entry = self._by_key.get(key)
        key_emptied = False
        if entry is outbox:
            del self._by_key[key]
            key_emptied = True
        elif isinstance(entry, dict):
            entry.pop(outbox, None)
            if len(entry) == 1:
                (self._by_key[key],) = entry
        emptied = [group for group in outbox.groups if _discard(self._by_group, group, outbox)]
        return key_emptied, emptied

    def join(self, outbox: Outbox, group: str) -> bool:
        """Add ``outbox`` to ``group``. Returns ``True`` if it is the group's first member."""
        members = self._by_group.get(group)
        if members is None:
            self._by_group[group] = {outbox: None}
            return True
        members[outbox] = None
        return False

    def leave(self, outbox: Outbox, group: str) -> bool:
        """Remove ``outbox`` from ``group``. Returns ``True`` if the group is now empty."""
        return _discard(self._by_group, group, outbox)

    def of_key(self, key: Key) -> Outbox | tuple[Outbox, ...] | None:
        """``key``'s one outbox, a snapshot of its outboxes (oldest first), or ``None``."""
        entry = self._by_key.get(key)
        if entry is None or not isinstance(entry, dict):
            return entry
        return tuple(entry)

    def all_of_key(self, key: Key) -> tuple[Outbox, ...]:
        """A snapshot of ``key``'s outboxes, oldest first."""
        entry = self._by_key.get(key)
        if entry is None:
            return ()
        return tuple(entry) if isinstance(entry, dict) else (entry,)

    def of_group(self, group: str) -> tuple[Outbox, ...]:
        """A snapshot of ``group``'s members, oldest first."""
        members = self._by_group.get(group)
        return tuple(members) if members else ()

    def everyone(self) -> tuple[Outbox, ...]:
        """A snapshot of every outbox, oldest first."""
        return tuple(self._by_id.values())

    def count_of_key(self, key: Key) -> int:
        """How many connections ``key`` holds here."""
        entry = self._by_key.get(key)
        if entry is None:
            return 0
        return len(entry) if isinstance(entry, dict) else 1

    def keys(self) -> Iterator[Key]:
        """Keys with at least one connection (a snapshot)."""
        return iter(tuple(self._by_key))

    def groups(self) -> Iterator[str]:
        """Groups with at least one member (a snapshot)."""
        return iter(tuple(self._by_group))

    @property
    def key_count(self) -> int:
        """Number of distinct keys."""
        return len(self._by_key)

    @property
    def group_count(self) -> int:
        """Number of non-empty groups."""
        return len(self._by_group)


def _discard(table: dict[Any, _Members], name: str, outbox: Outbox) -> bool:
    members = table.get(name)
    if members is None or outbox not in members:
        return False
    del members[outbox]
    if members:
        return False
    del table[name]
    return True
