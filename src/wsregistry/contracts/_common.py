"""Running named checks, each under its own deadline."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio


async def run_checks(
    checks: Sequence[tuple[str, Callable[[], Awaitable[None]]]], *, check_timeout: float
) -> None:
    """Run ``checks`` in order; each must finish within ``check_timeout`` seconds.

    Raises:
        AssertionError: the first check that failed or timed out, named.
        ValueError: ``check_timeout`` is not positive.
    """
    if not check_timeout > 0:
        raise ValueError(f"check_timeout must be positive seconds, got {check_timeout!r}")
    for name, check in checks:
        try:
            with anyio.fail_after(check_timeout):
                await check()
        except TimeoutError:
            raise AssertionError(
                f"{name}: did not finish within {check_timeout} s (a frame, a close or a presence "
                "change that was expected never came)"
            ) from None
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc
