"""Several uvicorn processes (Starlette adapter) sharing one Redis, with real websocket clients."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect

from tests.helpers import TIMEOUT

from .conftest import SHARED_REDIS

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT = 0.2
PRESENCE_TIMEOUT = 3 * HEARTBEAT  # RedisBackend's default: 3 x heartbeat_interval


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Server:
    def __init__(self, namespace: str) -> None:
        env = {
            **os.environ,
            "REDIS_URL": SHARED_REDIS,
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

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise RuntimeError(f"server failed to start: {line!r}")
        self.port = int(line.split()[1])

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, key: str, *groups: str) -> str:
        query = "&".join([f"key={key}", *(f"group={g}" for g in groups)])
        return f"ws://127.0.0.1:{self.port}/ws?{query}"

    def wait_idle(self) -> None:
        """Wait until the server has unregistered every socket (closes are asynchronous)."""
        deadline = time.monotonic() + TIMEOUT
        with httpx.Client() as client:
            while client.get(self.http + "/stats").json()["connections"]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"server {self.port} still holds connections")
                time.sleep(0.01)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_servers(namespace: str, count: int) -> list[Server]:
    servers = [Server(namespace) for _ in range(count)]
    for server in servers:
        server.wait_ready()
    return servers


@pytest.fixture(scope="module")
def module_namespace() -> str:
    return "wsrtest-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def servers(module_namespace: str) -> Iterator[list[Server]]:
    started = start_servers(module_namespace, 3)
    try:
        yield started
        for server in started:
            server.wait_idle()  # a clean, fast SIGTERM needs no close in flight
    finally:
        for server in started:
            server.stop()


async def post(server: Server, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.post(server.http + path, json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


async def get(server: Server, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(server.http + path)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


async def open_client(url: str) -> tuple[ClientConnection, str]:
    """Connect and wait for the hello: then the socket is reachable cluster-wide."""
    ws = await connect(url)
    with anyio.fail_after(TIMEOUT):
        hello = json.loads(await ws.recv())
    return ws, hello["hello"]


async def receive(ws: ClientConnection) -> Any:
    with anyio.fail_after(TIMEOUT):
        frame = await ws.recv()
    if isinstance(frame, bytes):
        return frame
    try:
        return json.loads(frame)
    except ValueError:
        return frame  # a str message is sent as raw text


async def test_send_reaches_tabs_on_every_process_exactly_once(servers: list[Server]) -> None:
    s0, s1, s2 = servers
    tab0, _ = await open_client(s0.ws("alice"))
    tab1, _ = await open_client(s1.ws("alice"))
    bob, _ = await open_client(s2.ws("bob"))
    try:
        assert await post(s2, "/send", {"key": "alice", "message": {"n": 1}}) == {"local": 0}
        assert await post(s0, "/send", {"key": "alice", "message": {"n": 2}}) == {"local": 1}
        await post(s2, "/send", {"key": "alice", "message": "fence"})
        await post(s2, "/send", {"key": "bob", "message": "bob fence"})
        for tab in (tab0, tab1):
            assert [await receive(tab) for _ in range(3)] == [{"n": 1}, {"n": 2}, "fence"]
        assert await receive(bob) == "bob fence"  # nothing else reached bob
    finally:
        for ws in (tab0, tab1, bob):
            await ws.close()


async def test_broadcast_groups_and_connection_sends_cross_processes(
    servers: list[Server],
) -> None:
    s0, s1, s2 = servers
    m0, id0 = await open_client(s0.ws("m0", "room"))
    m1, _ = await open_client(s1.ws("m1", "room"))
    out, _ = await open_client(s2.ws("out"))
    try:
        await post(s2, "/broadcast", {"message": "to room", "group": "room", "exclude": id0})
        await post(s1, "/broadcast", {"message": "to all"})
        await post(s2, "/to-connection", {"id": id0, "message": "just m0"})
        assert await receive(m0) == "to all"
        assert await receive(m0) == "just m0"
        assert [await receive(m1), await receive(m1)] == ["to room", "to all"]
        assert await receive(out) == "to all"
    finally:
        for ws in (m0, m1, out):
            await ws.close()


async def test_presence_across_processes(servers: list[Server]) -> None:
    s0, s1, s2 = servers
    first, _ = await open_client(s0.ws("carol"))
    second, _ = await open_client(s1.ws("carol"))
    number, _ = await open_client(s1.ws("int:42"))
    try:
        online = await get(s2, "/online?key=carol")
        assert online["count"] == 2
        assert {"carol", "42"} <= set(online["keys"])
        assert (await get(s2, "/online?key=int:42"))["count"] == 1
        assert (await get(s2, "/online?key=42"))["count"] == 0  # "42" is not 42
        assert await post(s2, "/send", {"key": "carol", "message": "hi", "require": True}) == {
            "local": 0
        }
        assert await post(s2, "/send", {"key": "dave", "message": "x", "require": True}) == {
            "offline": True
        }
        await first.close()
        with anyio.fail_after(TIMEOUT):
            while (await get(s2, "/online?key=carol"))["count"] != 1:  # noqa: ASYNC110
                await anyio.sleep(0.01)
    finally:
        for ws in (second, number):
            await ws.close()


async def kill_and_wait_offline(
    observer: Server, victim: Server, key: str, *, bound: float
) -> None:
    """Connect ``key`` to ``victim``, ``kill -9`` it, and check ``observer`` sees ``key``
    offline within ``bound`` seconds (presence timeout after the last lease renewal, which
    is at most one heartbeat before the kill, plus scheduling slack on a busy machine)."""
    ws, _ = await open_client(victim.ws(key))
    assert (await get(observer, f"/online?key={key}"))["count"] == 1
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    killed_at = time.monotonic()
    with anyio.fail_after(TIMEOUT):
        while (await get(observer, f"/online?key={key}"))["count"]:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    gone_after = time.monotonic() - killed_at
    assert gone_after <= bound, gone_after
    reply = await post(observer, "/send", {"key": key, "message": "x", "require": True})
    assert reply == {"offline": True}
    assert key not in (await get(observer, f"/online?key={key}"))["keys"]
    await ws.close()


async def test_killed_process_presence_disappears_within_the_bound(
    servers: list[Server], module_namespace: str
) -> None:
    observer = servers[0]
    (victim,) = start_servers(module_namespace, 1)
    try:
        await kill_and_wait_offline(observer, victim, "erin", bound=PRESENCE_TIMEOUT + 0.5)
        # a live node purges the dead one's entries at its next heartbeat
        client = redis.Redis.from_url(SHARED_REDIS)
        try:
            with anyio.fail_after(TIMEOUT):
                while client.zcard(f"{module_namespace}:nodes") != len(servers):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            assert not client.keys(f"{module_namespace}:p:*")
        finally:
            client.close()
    finally:
        victim.stop()
