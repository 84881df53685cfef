"""Timing for an attached observer: fan-out durations and the delay from call to write.

Used only while an :class:`~wsregistry.observer.Observer` is attached. A call
stamps the time once (``stamp``); every frame it queues gets that stamp in a
per-outbox deque that runs parallel to the outbox's queue. Frames leave a
queue only at its front (written, or dropped by the drop-oldest policy) or all
at once (closed), and new ones are appended at its back, so when a writer takes
a frame the stamps of the frames still queued are the *last* ``len(queue)``
entries: trimming the deque from the front to ``len(queue) + 1`` leaves the
taken frame's stamp first. A frame queued before the observer was attached has
no stamp (the deque is shorter) and is not reported.
"""

from __future__ import annotations

from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._counters import Counters
    from ._outbox import Outbox
    from .observer import Observer

T = TypeVar("T")


class Timing:
    """The stamps of one run's queued frames, and the calls to its observer."""

    __slots__ = ("counters", "observer", "stamp", "stamps")

    def __init__(self, observer: Observer, counters: Counters) -> None:
        self.observer = observer
        self.counters = counters
        self.stamp = perf_counter()
        self.stamps: dict[Outbox, float | deque[float]] = {}

    def fan_out(self, deliver: Callable[..., int], *args: Any) -> int:
        """Run a synchronous fan-out, stamping what it queues; report it."""
        counters = self.counters
        sent = counters.sent
        self.stamp = start = perf_counter()
        delivered = deliver(*args)
        seconds = perf_counter() - start
        observer = self.observer
        observer.fanned_out(seconds, delivered)
        direct = counters.sent - sent
        if direct:
            observer.written(seconds, direct)
        return delivered

    def queued(self, outbox: Outbox) -> None:
        """``outbox`` queued a frame at the back of its queue."""
        stamps = self.stamps
        held = stamps.get(outbox)
        if held is None:  # the common case: one frame waits; no deque for it
            stamps[outbox] = self.stamp
        elif type(held) is float:
            stamps[outbox] = deque((held, self.stamp))
        else:
            held.append(self.stamp)  # type: ignore[union-attr]

    def taken(self, outbox: Outbox) -> float | None:
        """The stamp of the frame a writer just took from ``outbox`` (``None``: unknown)."""
        stamps = self.stamps
        held = stamps.get(outbox)
        if held is None:
            return None
        queue = outbox.queue
        keep = (len(queue) if queue else 0) + 1  # the taken frame and those still queued
        if type(held) is float:
            if keep > 1:  # the stamp is a later frame's; the taken one had none
                return None
            del stamps[outbox]
            return held
        while len(held) > keep:  # type: ignore[arg-type]
            held.popleft()  # type: ignore[union-attr]
        if len(held) < keep:  # type: ignore[arg-type]
            return None
        stamp: float = held.popleft()  # type: ignore[union-attr]
        if not held:
            del stamps[outbox]
        return stamp

    def forget(self, outbox: Outbox) -> None:
        """``outbox`` has nothing queued any more."""
        stamps = self.stamps
        if stamps and not outbox.queue:
            stamps.pop(outbox, None)
