"""An optional instrumentation hook: what the registry tells a metrics collector.

The core calls an :class:`Observer` only when one is attached
(``registry.observer = ...``); with none, every call site is a single
``is not None`` test. :mod:`wsregistry.prometheus` ships one; implement the
protocol to feed another metrics system. Every method is called on the
registry's event loop, must not block and must not raise.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["REFUSAL_REASONS", "Observer"]

REFUSAL_REASONS = ("auth", "origin", "limit", "size", "unavailable")
"""The reasons an adapter reports to :meth:`Observer.refused`."""


class Observer(Protocol):
    """Receives timings and refusals from a registry and its adapters.

    An observer may also have a ``times_queued_frames`` attribute: ``False``
    reports only frames written directly inside a call, and saves the
    bookkeeping (about a microsecond) each frame that waits in a queue costs.
    """

    def fanned_out(self, seconds: float, targets: int) -> None:
        """A send or broadcast was handed to its local targets.

        Args:
            seconds: how long the synchronous fan-out took (serialisation excluded).
            targets: how many local connections took the message.
        """

    def written(self, seconds: float, frames: int) -> None:
        """``frames`` frames reached their transports, ``seconds`` after the call queued them.

        Frames written directly inside a fan-out (the transport's ``send_nowait``
        fast path) are reported together, with the fan-out's duration as their
        delay (an upper bound); frames written by a writer task are reported one
        by one with their own delay.
        """

    def refused(self, reason: str) -> None:
        """An adapter refused a handshake or closed a socket for breaking a limit.

        Args:
            reason: one of :data:`REFUSAL_REASONS`: ``"auth"`` (the authentication
                hook said no), ``"origin"`` (``Origin`` not allowed), ``"limit"``
                (too many connections for the key), ``"size"`` (an inbound
                message over ``max_message_size``), ``"unavailable"`` (the
                registry was not running).
        """
