"""What the demo does with connections and messages: presence, DMs, rooms, announcements.

Every reply goes through the registry, so it works unchanged across several
workers when the registry has a Redis backend.

Client → server: ``{"type": "dm", "to", "text"}``, ``{"type": "join"|"leave", "room"}``,
``{"type": "say", "room", "text"}``, ``{"type": "announce", "text"}``.

Server → client: ``welcome`` (with the worker serving the tab), ``history``, ``presence``,
``dm``, ``joined``, ``left``, ``room``, ``room_notice``, ``announcement``, ``error``.

History: a new tab first gets the recent announcements and the user's recent direct
messages, from a bounded in-memory buffer of the worker that handled them (with several
workers a tab sees what its own worker handled; the page skips messages it already has).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections import OrderedDict, deque
from typing import Any

from wsregistry import Connection, Registry, WSRegistryError

logger = logging.getLogger("demo")

ROOM_PATTERN = re.compile(r"[a-z0-9_-]{1,32}")
MAX_TEXT = 2000
HISTORY = 50  # messages kept per user, and announcements
HISTORY_USERS = 1000  # users whose direct messages are kept (least recently used dropped)


def room_group(room: str) -> str:
    """The registry group of a room."""
    return f"room:{room}"


class Chat:
    """The demo's behaviour, as the adapter's ``on_connect``/``on_message``/``on_disconnect``."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._announcements: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._dms: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()

    async def on_connect(self, conn: Connection) -> None:
        """Greet the new tab with who is online and what it missed; tell everyone."""
        online = sorted(str(key) for key in await self.registry.online_keys())
        worker = {"node": self.registry.node_id, "pid": os.getpid()}  # who serves this tab
        await conn.send({"type": "welcome", "you": conn.key, "online": online, **worker})
        await conn.send({"type": "history", "messages": self._history_of(str(conn.key))})
        await self.registry.broadcast({"type": "presence", "user": conn.key, "online": True})

    def _history_of(self, user: str) -> list[dict[str, Any]]:
        messages = [*self._announcements, *self._dms.get(user, ())]
        return sorted(messages, key=lambda message: message["ts"])

    def _remember_dm(self, user: str, message: dict[str, Any]) -> None:
        kept = self._dms.pop(user, None) or deque(maxlen=HISTORY)
        kept.append(message)
        self._dms[user] = kept  # most recently used last
        while len(self._dms) > HISTORY_USERS:
            self._dms.popitem(last=False)

    async def on_disconnect(self, conn: Connection) -> None:
        """When the user's last tab (on any worker) is gone, tell everyone."""
        if not self.registry.running:
            return  # shutting down
        try:
            gone = await self.registry.online_count(conn.key) == 0
            # A tab that reconnected during the await makes the user online again.
            if gone and not self.registry.lookup(conn.key):
                await self.registry.broadcast(
                    {"type": "presence", "user": conn.key, "online": False}
                )
        except WSRegistryError as exc:
            logger.warning("could not announce that %s left: %s", conn.key, exc)

    async def on_message(self, conn: Connection, data: str | bytes) -> None:
        """Handle one message from a tab; bad input gets an ``error`` reply, never a crash."""
        try:
            message = json.loads(data)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            await _error(conn, "messages are JSON objects")
            return
        handler = _HANDLERS.get(message.get("type"))  # type: ignore[arg-type]
        if handler is None:
            await _error(conn, f"unknown message type {message.get('type')!r}")
            return
        await handler(self, conn, message)

    async def _dm(self, conn: Connection, message: dict[str, Any]) -> None:
        to, text = message.get("to"), _text(message)
        if not isinstance(to, str) or text is None:
            await _error(conn, "a direct message needs 'to' and a non-empty 'text'")
            return
        if not await self.registry.is_online(to):
            await _error(conn, f"{to} is offline")
            return
        dm: dict[str, Any] = {"type": "dm", "id": _id(), "from": conn.key, "to": to}
        dm.update(text=text, ts=time.time())
        self._remember_dm(to, dm)
        if to != conn.key:
            self._remember_dm(str(conn.key), dm)
        await self.registry.send(to, dm)  # every tab of the recipient, on every worker
        if to != conn.key:
            await self.registry.send(conn.key, dm)  # and every tab of the sender

    async def _join(self, conn: Connection, message: dict[str, Any]) -> None:
        room = _room(message)
        if room is None:
            await _error(conn, "a room name is 1-32 of a-z, 0-9, '-' or '_'")
            return
        group = room_group(room)
        if group not in conn.groups:
            await self.registry.join(conn, group)
            await self._notice(room, f"{conn.key} joined")
        await conn.send({"type": "joined", "room": room})

    async def _leave(self, conn: Connection, message: dict[str, Any]) -> None:
        room = _room(message)
        if room is None or room_group(room) not in conn.groups:
            await _error(conn, "you are not in that room")
            return
        await self.registry.leave(conn, room_group(room))
        await conn.send({"type": "left", "room": room})
        await self._notice(room, f"{conn.key} left")

    async def _say(self, conn: Connection, message: dict[str, Any]) -> None:
        room, text = _room(message), _text(message)
        if room is None or text is None:
            await _error(conn, "a room message needs 'room' and a non-empty 'text'")
            return
        if room_group(room) not in conn.groups:
            await _error(conn, f"join #{room} first")
            return
        said = {"type": "room", "room": room, "from": conn.key, "text": text, "ts": time.time()}
        await self.registry.broadcast(said, group=room_group(room))

    async def _announce(self, conn: Connection, message: dict[str, Any]) -> None:
        text = _text(message)
        if text is None:
            await _error(conn, "an announcement needs a non-empty 'text'")
            return
        announcement: dict[str, Any] = {"type": "announcement", "id": _id(), "from": conn.key}
        announcement.update(text=text, ts=time.time())
        self._announcements.append(announcement)
        await self.registry.broadcast(announcement)

    async def _notice(self, room: str, text: str) -> None:
        notice = {"type": "room_notice", "room": room, "text": text, "ts": time.time()}
        await self.registry.broadcast(notice, group=room_group(room))


_HANDLERS = {
    "dm": Chat._dm,
    "join": Chat._join,
    "leave": Chat._leave,
    "say": Chat._say,
    "announce": Chat._announce,
}


def _id() -> str:
    return uuid.uuid4().hex[:16]


def _text(message: dict[str, Any]) -> str | None:
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        return None
    return text.strip()[:MAX_TEXT]


def _room(message: dict[str, Any]) -> str | None:
    room = message.get("room")
    if not isinstance(room, str):
        return None
    room = room.strip().lower()
    return room if ROOM_PATTERN.fullmatch(room) else None


async def _error(conn: Connection, text: str) -> None:
    await conn.send({"type": "error", "text": text})
