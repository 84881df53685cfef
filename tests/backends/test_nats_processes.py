"""Several uvicorn processes sharing one NATS: the cross-process tests of the Redis backend,
run again on NATS, plus presence expiry after ``kill -9`` of a process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import anyio
import pytest

from tests.helpers import TIMEOUT

from .nats_support import SHARED_NATS, delete_streams, new_namespace
from .test_redis_processes import (
    ROOT,
    Server,
    get,
    kill_and_wait_offline,
    test_broadcast_groups_and_connection_sends_cross_processes,
    test_presence_across_processes,
    test_send_reaches_tabs_on_every_process_exactly_once,
)

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

HEARTBEAT = 0.2
PRESENCE_TIMEOUT = 3 * HEARTBEAT  # NatsBackend's default: 3 x heartbeat_interval

__all__ = [  # the shared tests, collected here with this module's ``servers``
    "test_broadcast_groups_and_connection_sends_cross_processes",
    "test_presence_across_processes",
    "test_send_reaches_tabs_on_every_process_exactly_once",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class NatsServer(Server):
    def __init__(self, namespace: str) -> None:
        env = {
            **os.environ,
            "WSR_BACKEND": "nats",
            "NATS_URL": SHARED_NATS,
            "WSR_NAMESPACE": namespace,
            "WSR_HEARTBEAT": str(HEARTBEAT),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.backends.cluster_app"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
        )
        self.port = 0


def start_servers(namespace: str, count: int) -> list[Server]:
    servers: list[Server] = [NatsServer(namespace) for _ in range(count)]
    for server in servers:
        server.wait_ready()
    return servers


@pytest.fixture(scope="module")
def module_namespace() -> str:
    return new_namespace()


@pytest.fixture(scope="module")
def servers(module_namespace: str) -> Iterator[list[Server]]:
    started = start_servers(module_namespace, 3)
    try:
        yield started
        for server in started:
            server.wait_idle()
    finally:
        for server in started:
            server.stop()
        anyio.run(delete_streams, SHARED_NATS, module_namespace)


async def test_killed_process_presence_disappears_within_the_bound(
    servers: list[Server], module_namespace: str
) -> None:
    observer = servers[0]
    (victim,) = start_servers(module_namespace, 1)
    try:
        await kill_and_wait_offline(observer, victim, "erin", bound=PRESENCE_TIMEOUT + 0.5)
        # a live node (any) reaps the dead one's entries at its next heartbeat
        with anyio.fail_after(TIMEOUT):
            while not sum([(await get(s, "/stats"))["detail"]["reaped"] for s in servers]):  # noqa: ASYNC110
                await anyio.sleep(0.01)
    finally:
        victim.stop()
