"""What the demo does with connections and messages: presence, DMs, rooms, announcements.

Every reply goes through the registry, so it works unchanged across several
workers when the registry has a Redis backend.

Client → server: ``{"type": "dm", "to", "text"}``, ``{"type": "join"|"leave", "room"}``,
``{"type": "say", "room", "text"}``, ``{"type": "announce", "text"}``.

Server → client: ``welcome``, ``presence``, ``dm``, ``joined``, ``left``, ``room``,
``room_notice``, ``announcement``, ``error``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from wsregistry import Connection, Registry, WSRegistryError

logger = logging.getLogger("demo")

ROOM_PATTERN = re.compile(r"[a-z0-9_-]{1,32}")
MAX_TEXT = 2000


def room_group(room: str) -> str:
    """The registry group of a room."""
    return f"room:{room}"


class Chat:
    """The demo's behaviour, as the adapter's ``on_connect``/``on_message``/``on_disconnect``."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def on_connect(self, conn: Connection) -> None:
        """Greet the new tab with who is online, and tell everyone the user is here."""
        online = sorted(str(key) for key in await self.registry.online_keys())
        node = self.registry.node_id  # which worker serves this tab
        await conn.send({"type": "welcome", "you": conn.key, "online": online, "node": node})
        await self.registry.broadcast({"type": "presence", "user": conn.key, "online": True})

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
        dm = {"type": "dm", "from": conn.key, "to": to, "text": text, "ts": time.time()}
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
        await self.registry.broadcast(
            {"type": "announcement", "from": conn.key, "text": text, "ts": time.time()}
        )

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
