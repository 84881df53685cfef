"""The demo in a real browser: headless Chromium driven by Playwright, against uvicorn."""

from __future__ import annotations

import os
import re
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import httpx
import pytest
from demo.app import create_app
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from wsregistry import Connection, Registry
from wsregistry.backends.redis import RedisBackend

from ..helpers import TIMEOUT, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.browser]

REDIS_URL = "redis://127.0.0.1:6379/0"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
NOTIFY_SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "notify_from_worker.py"
TIMEOUT_MS = int(TIMEOUT * 2000)
expect.set_options(timeout=TIMEOUT_MS)

Serve = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def chromium() -> str:
    assert CHROMIUM.exists(), "Chromium is missing: run scripts/ensure-services.sh"
    return str(CHROMIUM)


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def _sign_in(page: Page, base: str, name: str) -> None:
    await page.goto(base)
    await page.fill("#name", name)
    await page.click("#signin-form button[type=submit]")
    await _connected(page)


async def _connected(page: Page) -> None:
    await expect(page.locator("#status")).to_have_text("connected", timeout=TIMEOUT_MS)


async def _send(page: Page, channel: str, text: str) -> None:
    await page.click(f'.channel[data-target="{channel}"]')
    await page.fill("#message", text)
    await page.press("#message", "Enter")


def _line(page: Page, channel: str, text: str) -> Locator:
    return page.locator(f'.feed[data-channel="{channel}"] li', has_text=text)


async def _announce_and_wait(sender: Page, readers: list[Page], text: str) -> None:
    """Announce, then wait for every reader to show it: whatever the server sent a reader
    before the announcement (one socket, in order) is on its page by then."""
    await _send(sender, "announcements", text)
    for reader in readers:
        await _line(reader, "announcements", text).wait_for(state="attached", timeout=TIMEOUT_MS)


def _in_room(registry: Registry, user: str, room: str, *, not_conn: Connection) -> bool:
    return any(
        conn.key == user and conn is not not_conn for conn in registry.members(f"room:{room}")
    )


async def _online_count(http: httpx.AsyncClient, user: str) -> int:
    count: int = (await http.get("/api/online")).json()["users"].get(user, 0)
    return count


async def test_two_users_one_with_two_tabs(
    serve: Serve, listen_socket: socket.socket, browser: Browser
) -> None:
    port = listen_socket.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    registry = Registry()
    app = create_app(registry=registry, secret="browser-test", allowed_origins=[base])
    async with serve(app, listen_socket), httpx.AsyncClient(base_url=base) as http:
        alice_context = await browser.new_context(viewport={"width": 1100, "height": 680})
        bob_context = await browser.new_context(viewport={"width": 1100, "height": 680})
        page_errors: list[str] = []
        for context in (alice_context, bob_context):
            context.on(
                "page", lambda page: page.on("pageerror", lambda e: page_errors.append(str(e)))
            )
        alice1 = await alice_context.new_page()
        await _sign_in(alice1, base, "alice")
        alice2 = await alice_context.new_page()
        await alice2.goto(base)  # same browser profile: the session cookie signs it in
        await _connected(alice2)
        bob = await bob_context.new_page()
        await _sign_in(bob, base, "bob")
        for page in (alice1, alice2):
            await expect(page.locator('#online [data-user="bob"]')).to_be_visible()

        # A direct message from bob reaches both of alice's tabs.
        await _send(bob, "dm:alice", "hello alice, from bob")
        for page in (alice1, alice2):
            await expect(page.locator('.channel[data-target="dm:bob"] .badge')).to_have_text("1")
            await page.click('.channel[data-target="dm:bob"]')
            await expect(_line(page, "dm:bob", "hello alice, from bob")).to_be_visible()
        await expect(_line(bob, "dm:alice", "hello alice, from bob")).to_be_visible()

        # ... and a message from alice to herself is not shown to bob.
        await _send(alice2, "dm:alice", "note to self")
        await expect(_line(alice1, "dm:alice", "note to self")).to_be_attached()
        await _announce_and_wait(alice1, [bob, alice2], "barrier one")
        assert await bob.locator(".feed li", has_text="note to self").count() == 0

        # Rooms are per tab: alice's first tab and bob join #lobby, alice's second does not.
        for page in (alice1, bob):
            await page.fill("#room-name", "lobby")
            await page.click("#join-form button")
            await expect(page.locator("#channel-title")).to_have_text("# lobby")
        # The server drops bob's socket (a restart, 1012): the page reconnects by itself
        # and joins its rooms again.
        (dropped,) = registry.lookup("bob")
        await dropped.close(1012, "service restart")
        await wait_until(lambda: _in_room(registry, "bob", "lobby", not_conn=dropped))
        await _connected(bob)
        await _send(bob, "room:lobby", "hi lobby")
        await expect(_line(alice1, "room:lobby", "hi lobby")).to_be_visible()
        await expect(_line(bob, "room:lobby", "hi lobby")).to_be_visible()
        await _announce_and_wait(bob, [alice2], "barrier two")
        assert await alice2.locator(".feed li", has_text="hi lobby").count() == 0
        await alice1.click('.channel[data-target="dm:bob"]')
        ARTIFACTS.mkdir(exist_ok=True)
        await alice1.screenshot(path=str(ARTIFACTS / "demo.png"))
        await bob.click('.channel[data-target="room:lobby"]')
        await bob.screenshot(path=str(ARTIFACTS / "demo-room.png"))

        # Closing one of alice's tabs keeps her online; closing both marks her offline.
        await alice2.close()
        with anyio.fail_after(TIMEOUT):
            while await _online_count(http, "alice") != 1:
                await http.get("/api/health")  # a round trip, then ask again
        await _announce_and_wait(alice1, [bob], "barrier three")
        await expect(bob.locator('#online [data-user="alice"]')).to_be_visible()
        await alice1.close()
        await expect(bob.locator('#online [data-user="alice"]')).to_have_count(
            0, timeout=TIMEOUT_MS
        )
        assert await _online_count(http, "alice") == 0
        assert page_errors == []  # no uncaught JavaScript error on any page
        await alice_context.close()
        await bob_context.close()


@pytest.mark.redis
async def test_a_worker_dm_shows_the_worker_and_a_new_tab_gets_history(
    serve: Serve, listen_socket: socket.socket, browser: Browser
) -> None:
    """``examples/notify_from_worker.py`` (a real process, through Redis) reaches the page
    although its sender is never online; the page shows its worker; a new tab sees what it
    missed."""
    port = listen_socket.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    namespace = "wsrtest-demo-" + uuid.uuid4().hex[:12]
    registry = Registry(backend=RedisBackend(REDIS_URL, namespace=namespace))
    app = create_app(registry=registry, secret="browser-test", allowed_origins=[base])
    async with serve(app, listen_socket, registry=registry):
        context = await browser.new_context(viewport={"width": 1280, "height": 720})
        errors: list[str] = []
        context.on("page", lambda page: page.on("pageerror", lambda e: errors.append(str(e))))
        alice = await context.new_page()
        await _sign_in(alice, base, "alice")
        await expect(alice.locator("#worker")).to_have_text(re.compile(rf"worker {os.getpid()}"))

        result = await anyio.run_process(
            [sys.executable, str(NOTIFY_SCRIPT), "alice", "Your export is ready"],
            env={
                **os.environ,
                "WSREGISTRY_REDIS_URL": REDIS_URL,
                "WSREGISTRY_REDIS_NAMESPACE": namespace,
            },
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
        worker = alice.locator('#online .channel[data-target="dm:worker"]')
        await expect(worker).to_contain_text("worker (offline)")
        await expect(worker.locator(".badge")).to_have_text("1")
        await worker.click()
        await expect(_line(alice, "dm:worker", "Your export is ready")).to_be_visible()

        # History: what alice sent before is on a tab she opens afterwards, once.
        await _send(alice, "announcements", "history one")
        await _send(alice, "dm:alice", "a note for later")
        await expect(_line(alice, "dm:alice", "a note for later")).to_be_attached()
        later = await context.new_page()
        await later.goto(base)
        await _connected(later)
        await expect(_line(later, "announcements", "history one")).to_have_count(1)
        await expect(_line(later, "dm:alice", "a note for later")).to_have_count(1)
        await later.reload()  # a reconnecting page does not duplicate what it has
        await _connected(later)
        await expect(_line(later, "announcements", "history one")).to_have_count(1)
        ARTIFACTS.mkdir(exist_ok=True)
        await alice.screenshot(path=str(ARTIFACTS / "demo-worker-dm.png"))
        assert errors == []
        await context.close()
