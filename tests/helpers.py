"""Test helpers shared by every test directory."""

from __future__ import annotations

import os
from collections.abc import Callable

import anyio

TIMEOUT = float(os.environ.get("WSREGISTRY_TEST_TIMEOUT", "5"))
"""One scaled timeout unit (seconds): raise WSREGISTRY_TEST_TIMEOUT on slow machines."""


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Wait until ``predicate()`` is true; fail the test after :data:`TIMEOUT` seconds.

    For state that offers no event to wait on; prefer an event when there is one.
    """
    with anyio.fail_after(TIMEOUT):
        while not predicate():  # noqa: ASYNC110 - polled state has no event
            await anyio.sleep(0.001)
