"""Reaching connected users from a process that holds no sockets: Redis emitters."""

from __future__ import annotations

import anyio

from wsregistry.backends.redis import RedisEmitter, SyncRedisEmitter

REDIS_URL = "redis://127.0.0.1:6379/0"


# --8<-- [start:sync]
def report_ready(user_id: int, *, namespace: str = "myapp") -> bool:
    """At the end of a Celery/RQ job or a cron script: blocking, thread-safe."""
    with SyncRedisEmitter(REDIS_URL, namespace=namespace) as emitter:
        nodes = emitter.send(user_id, {"type": "report-ready"})
    return nodes > 0  # how many server processes hold a connection of the user
    # --8<-- [end:sync]


# --8<-- [start:async]
async def announce(minutes: int, *, namespace: str = "myapp") -> int:
    """From asyncio code outside the web servers (an admin tool, another service)."""
    async with RedisEmitter(REDIS_URL, namespace=namespace) as emitter:
        return await emitter.broadcast({"type": "maintenance", "in_minutes": minutes})
    # --8<-- [end:async]


if __name__ == "__main__":
    anyio.run(announce, 5)
