"""Per-connection outbound queue limits and the overflow policy."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_QUEUE", "DEFAULT_MAX_QUEUE_BYTES", "OverflowPolicy", "QueueLimits"]

DEFAULT_MAX_QUEUE = 1024
"""Default bound on messages waiting in one connection's outbound queue."""

DEFAULT_MAX_QUEUE_BYTES = 1024 * 1024
"""Default bound on bytes waiting in one connection's outbound queue (1 MiB)."""


class OverflowPolicy(str, enum.Enum):
    """What happens when a message does not fit a connection's outbound queue."""

    CLOSE = "close"
    """Unregister the connection and close it with 1013 (try again later). Default."""
    DROP_OLDEST = "drop_oldest"
    """Discard the oldest queued messages until the new one fits."""
    DROP_NEWEST = "drop_newest"
    """Discard the new message; keep what is queued."""


@dataclass(frozen=True)
class QueueLimits:
    """Bounds of one connection's outbound queue.

    A message is accepted into an empty queue whatever its size, so one large
    message can always be sent; otherwise a message that would take the queue
    past ``max_messages`` or ``max_bytes`` triggers ``overflow``.

    Attributes:
        max_messages: most messages waiting per connection (>= 1).
        max_bytes: most payload bytes waiting per connection (>= 1).
        overflow: the policy applied when a message does not fit.
    """

    max_messages: int = DEFAULT_MAX_QUEUE
    max_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    overflow: OverflowPolicy = OverflowPolicy.CLOSE

    def __post_init__(self) -> None:
        for name in ("max_messages", "max_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        object.__setattr__(self, "overflow", OverflowPolicy(self.overflow))
