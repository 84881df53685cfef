"""Mutable counters the registry and its connections update in place."""

from __future__ import annotations


class Counters:
    """Running totals; :meth:`Registry.stats` copies them into a frozen snapshot."""

    __slots__ = (
        "backend_errors",
        "connects",
        "disconnects",
        "dropped",
        "dropped_closed",
        "overflows",
        "queued",
        "queued_bytes",
        "send_errors",
        "sent",
        "slow_consumer_closes",
    )

    def __init__(self) -> None:
        self.queued = 0
        self.queued_bytes = 0
        self.sent = 0
        self.dropped = 0
        self.slow_consumer_closes = 0
        self.send_errors = 0
        self.backend_errors = 0
        self.connects = 0
        self.disconnects = 0
        self.dropped_closed = 0
        self.overflows = 0
