"""Run uvicorn so that shutdown delivers queued messages and closes with 1001.

Install with ``pip install 'wsregistry[uvicorn]'``.

At shutdown uvicorn stops listening, then closes every open WebSocket with
1012 (service restart) and only afterwards runs the application's lifespan
shutdown, where ``async with registry`` would drain and close with 1001: too
late, the sockets are gone and what was queued is lost. :class:`Server` adds one
step in front: stop listening, let the registry deliver what is queued (up to
its ``drain_timeout``) and close every registered connection with 1001, then
let uvicorn finish as usual::

    from wsregistry.adapters import uvicorn as wsr_uvicorn

    registry = Registry()
    app = FastAPI(lifespan=registry_lifespan(registry))
    ...
    if __name__ == "__main__":
        wsr_uvicorn.run(app, registry=registry, host="0.0.0.0", port=8000)

With the ``uvicorn`` command line (``uvicorn app:app``) this hook is not
available: clients get 1012 from uvicorn and should reconnect.
"""

from __future__ import annotations

import contextlib
import socket
from typing import TYPE_CHECKING, Any

import anyio

try:
    import uvicorn
except ImportError as exc:  # pragma: no cover - exercised by the import-isolation test
    raise ImportError(
        "wsregistry.adapters.uvicorn needs uvicorn: pip install 'wsregistry[uvicorn]'"
    ) from exc

from ..registry import Registry

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Server", "run"]


class Server(uvicorn.Server):
    """A ``uvicorn.Server`` that drains the registry and closes with 1001 before shutdown.

    Args:
        config: the uvicorn configuration.
        registry: the registry the app serves (started by the app's lifespan).

    Raises:
        TypeError: ``registry`` is not a :class:`~wsregistry.Registry`.
    """

    def __init__(self, config: uvicorn.Config, *, registry: Registry) -> None:
        if not isinstance(registry, Registry):
            raise TypeError(
                f"registry must be a wsregistry Registry, got {type(registry).__name__}"
            )
        super().__init__(config)
        self.registry = registry

    async def shutdown(self, sockets: Sequence[socket.socket] | None = None) -> None:
        """Stop listening, drain and close registered sockets with 1001, then shut down."""
        for server in self.servers:
            server.close()
        if self.registry.running:
            with anyio.CancelScope(shield=True):
                await self.registry.close_connections()
        await super().shutdown(list(sockets) if sockets is not None else None)


def run(app: Any, *, registry: Registry, **config: Any) -> None:
    """Like ``uvicorn.run(app, **config)``, with :class:`Server`'s graceful shutdown.

    Serves in this process: ``workers`` and ``reload`` are not supported (run
    several processes with a shared backend instead). Blocks until the server
    stops (Ctrl-C / SIGTERM) and returns quietly then: the shutdown already
    delivered what was queued and closed the sockets with 1001, so the
    ``KeyboardInterrupt`` that asyncio raises again after a Ctrl-C is not
    propagated as a traceback.

    Raises:
        ValueError: ``workers`` or ``reload`` was given.
    """
    for option in ("workers", "reload"):
        if config.get(option):
            raise ValueError(f"wsregistry.adapters.uvicorn.run() does not support {option}=")
    with contextlib.suppress(KeyboardInterrupt):  # the server shut down gracefully on Ctrl-C
        Server(uvicorn.Config(app, **config), registry=registry).run()
