"""The demo under ``uvicorn --workers 2`` on Redis, and a worker script that notifies users.

The code is the same as in the single-process tests: only ``WSREGISTRY_REDIS_URL``
is set. Clients land on either worker (the kernel spreads accepts); the test
keeps opening tabs until alice has one on each worker.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
import redis

from ..helpers import TIMEOUT
from .demo_client import Tab, login, tab

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"
WORKERS = 2


@pytest.fixture
def namespace() -> Iterator[str]:
    name = "wsrtest-demo-" + uuid.uuid4().hex[:12]
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{name}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@asynccontextmanager
async def demo_workers(namespace: str) -> AsyncIterator[str]:
    """``uvicorn --workers 2`` on a socket bound to a free port; yields ``127.0.0.1:port``."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.set_inheritable(True)
        host = f"127.0.0.1:{sock.getsockname()[1]}"
        env = {
            **os.environ,
            "WSREGISTRY_REDIS_URL": REDIS_URL,
            "WSREGISTRY_REDIS_NAMESPACE": namespace,
            "WSREGISTRY_DEMO_ORIGINS": f"http://{host}",
        }
        command = [
            *(sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "examples")),
            *("demo.app:app", "--workers", str(WORKERS), "--fd", str(sock.fileno())),
            *("--log-level", "info", "--no-access-log"),
        ]
        process = await anyio.open_process(
            command, env=env, pass_fds=[sock.fileno()], stdout=None, stderr=-1
        )
        async with process:
            assert process.stderr is not None
            try:
                log = b""
                with anyio.fail_after(TIMEOUT * 4):
                    while log.count(b"Application startup complete") < WORKERS:
                        chunk = await process.stderr.receive()
                        log += chunk
                yield host
            finally:
                process.terminate()
                with anyio.fail_after(TIMEOUT * 2):
                    await process.wait()


async def notify_script(namespace: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "WSREGISTRY_REDIS_URL": REDIS_URL, "WSREGISTRY_REDIS_NAMESPACE": namespace}
    script = str(ROOT / "examples" / "notify_from_worker.py")
    with anyio.fail_after(TIMEOUT * 2):
        done = await anyio.run_process([sys.executable, script, *args], env=env, check=False)
    return done.returncode, (done.stdout + done.stderr).decode()


async def test_two_workers_share_users_and_a_worker_script_reaches_them(namespace: str) -> None:
    async with (
        demo_workers(namespace) as host,
        httpx.AsyncClient(base_url=f"http://{host}") as http,
        AsyncExitStack() as tabs,
    ):
        alice, bob = await login(http, "alice"), await login(http, "bob")
        by_node: dict[str, Tab] = {}
        for _ in range(30):  # a new tab lands on either worker
            opened = await tabs.enter_async_context(tab(host, alice))
            by_node.setdefault(opened.welcome["node"], opened)
            if len(by_node) == WORKERS:
                break
        assert len(by_node) == WORKERS, "every connection went to the same worker"
        alice_a, alice_b = by_node.values()
        bob1 = await tabs.enter_async_context(tab(host, bob))
        assert "alice" in bob1.welcome["online"]  # presence across workers

        # A direct message reaches alice's tabs on both workers, wherever bob is.
        await bob1.send(type="dm", to="alice", text="across workers")
        for reader in (alice_a, alice_b, bob1):
            await reader.until("dm", text="across workers")

        # A room spans workers.
        for member in (alice_a, bob1):
            await member.send(type="join", room="lobby")
            await member.until("joined", room="lobby")
        await alice_b.send(type="join", room="lobby")
        await alice_b.until("joined", room="lobby")
        await bob1.send(type="say", room="lobby", text="hi lobby")
        for member in (alice_a, alice_b, bob1):
            await member.until("room", text="hi lobby")

        # A separate process without sockets notifies alice and announces to everyone.
        code, output = await notify_script(namespace, "alice", "your export is ready")
        assert code == 0, output
        for reader in (alice_a, alice_b):
            (*_, dm) = await reader.until("dm", text="your export is ready")
            assert dm["from"] == "worker"
        code, output = await notify_script(namespace, "--everyone", "maintenance at six")
        assert code == 0, output
        for reader in (alice_a, alice_b, bob1):
            await reader.until("announcement", text="maintenance at six")
        code, output = await notify_script(namespace, "carol", "hello?")
        assert code == 1
        assert "carol is offline" in output

        users = (await http.get("/api/online")).json()["users"]
        assert users["bob"] == 1
        assert users["alice"] >= WORKERS
