"""The servers under test, each run in its own process by ``python -m benchmarks.servers``.

Every server module offers ``running(options)``: an async context manager that
listens on a free loopback port and yields a :class:`~benchmarks.servers.base.BenchApp`
(count connections, broadcast, send to one user). Users are identified by the
``user`` query parameter the load client sends.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SERVERS", "ServerKind"]


@dataclass(frozen=True)
class ServerKind:
    """One server of the suite.

    Attributes:
        name: the id used on the command line and in results.
        label: how tables and charts name it.
        module: the module under ``benchmarks.servers`` that runs it.
        protocol: ``websocket`` or ``socketio`` (what the load client speaks).
        cluster: whether it can run as several processes over Redis.
    """

    name: str
    label: str
    module: str
    protocol: str = "websocket"
    cluster: bool = False


SERVERS: dict[str, ServerKind] = {
    kind.name: kind
    for kind in (
        ServerKind("websockets", "websockets + broadcast()", "raw_websockets"),
        ServerKind("naive", "naive Starlette loop", "naive_starlette"),
        ServerKind("socketio", "python-socketio", "socketio_server", "socketio", cluster=True),
        ServerKind("wsr-websockets", "wsregistry + websockets", "wsr_websockets", cluster=True),
        ServerKind("wsr-starlette", "wsregistry + Starlette", "wsr_starlette", cluster=True),
        ServerKind("wsr-starlette-asgi", "wsregistry + Starlette, ASGI send", "wsr_starlette_asgi"),
        ServerKind("wsr-fastapi", "wsregistry + FastAPI", "wsr_fastapi", cluster=True),
        ServerKind("wsr-fastapi-route", "wsregistry + FastAPI, plain route", "wsr_fastapi_route"),
    )
}
"""Every server, anchors first, in table order."""
