"""Stats, a health check and logging."""

from __future__ import annotations

import logging
from typing import Any

import anyio

from wsregistry import Registry
from wsregistry.testing import RecordingTransport


# --8<-- [start:health]
def health(registry: Registry) -> tuple[int, dict[str, Any]]:
    """An HTTP status and body for a readiness probe (non-blocking)."""
    stats = registry.stats()
    ok = registry.running and stats.backend.connected
    return (200 if ok else 503), {
        "running": registry.running,
        "backend": stats.backend.name,
        "backend_connected": stats.backend.connected,
        "connections": stats.connections,
        "queued_bytes": stats.queued_bytes,
        "slow_consumer_closes": stats.slow_consumer_closes,
        "backend_errors": stats.backend_errors,
    }
    # --8<-- [end:health]


def configure_logging() -> None:
    # --8<-- [start:logging]
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("wsregistry").setLevel(logging.INFO)  # DEBUG logs every (dis)connect
    # --8<-- [end:logging]


async def main() -> dict[str, Any]:
    registry = Registry()
    assert health(registry)[0] == 503  # not started yet
    async with registry:
        await registry.connect(RecordingTransport(), key="alice")
        status, body = health(registry)
        assert status == 200
    assert health(registry)[0] == 503  # closed
    return body


if __name__ == "__main__":
    anyio.run(main)
