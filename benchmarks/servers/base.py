"""What every benchmark server offers the control loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from benchmarks.wire import Message

__all__ = ["BenchApp", "Options", "user_of"]


@dataclass(frozen=True)
class Options:
    """How to run a server.

    Attributes:
        backend: ``memory`` (one process) or ``redis`` (a cluster of processes).
        redis_url: the Redis to use with ``backend="redis"``.
        channel: a prefix unique to this run, so runs never see each other's messages.
    """

    backend: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    channel: str = "wsregistry-bench"


class BenchApp(Protocol):
    """A running server, as the control loop drives it."""

    port: int

    def count(self) -> int:
        """How many connections the application holds now."""
        ...

    def users(self) -> list[str]:
        """The users connected to this process."""
        ...

    async def broadcast(self, message: Message) -> None:
        """Send ``message`` to every connection, the way this stack does it."""
        ...

    async def send(self, user: str, message: Message) -> None:
        """Send ``message`` to one user, the way this stack does it."""
        ...

    def stats(self) -> dict[str, Any]:
        """Extra counters worth reporting (e.g. the registry's stats)."""
        ...


def user_of(path_or_query: str) -> str:
    """The ``user`` query parameter of a request path (or of a bare query string)."""
    query = urlsplit(path_or_query).query if "?" in path_or_query else path_or_query
    return parse_qs(query)["user"][0]
