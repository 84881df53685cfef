"""The sans-I/O outbox: queue bounds in UTF-8 bytes, overflow outcomes, states."""

from __future__ import annotations

import pytest

from wsregistry import ConnectionState, OverflowPolicy, QueueLimits
from wsregistry._counters import Counters
from wsregistry._outbox import Offer, Outbox

from .transports import GatedTransport


def _outbox(**limits: object) -> tuple[Outbox, Counters]:
    counters = Counters()
    outbox = Outbox(
        id="c",
        key="k",
        transport=GatedTransport(),
        limits=QueueLimits(**limits),  # type: ignore[arg-type]
        counters=counters,
    )
    return outbox, counters


def test_fast_path_never_overtakes_a_queued_frame() -> None:
    # The window between a refused fast path and the writer's first step has no
    # checkpoint through the public API on asyncio, but may on trio; drive the
    # sans-I/O outbox directly to pin the rule deterministically: once a frame
    # waits, the outbox is not writable directly until a writer lets it go.
    outbox, _ = _outbox()
    assert outbox.writable_now
    assert outbox.offer("first") is Offer.SCHEDULE  # refused by the socket: queued
    assert not outbox.writable_now  # "second" must queue behind it
    assert outbox.offer("second") is Offer.QUEUED
    assert outbox.take() == "first"
    assert not outbox.writable_now  # the writer still holds it
    assert outbox.take() == "second"
    assert outbox.take() is None
    outbox.release()
    assert outbox.writable_now


def test_text_is_bounded_in_utf8_bytes_not_characters() -> None:
    # 300 characters of 3-byte UTF-8 are 900 bytes: the second one cannot fit 1000 bytes
    outbox, counters = _outbox(max_bytes=1000, overflow=OverflowPolicy.DROP_NEWEST)
    wide = "€" * 300
    assert outbox.offer(wide) is Offer.SCHEDULE
    assert outbox.queued_bytes == 900
    assert outbox.offer(wide) is Offer.DROPPED
    assert outbox.queued_bytes == 900
    assert counters.queued_bytes == 900
    assert counters.dropped == 1
    assert outbox.take() == wide
    assert outbox.queued_bytes == 0
    assert counters.queued == 0
    assert counters.queued_bytes == 0


def test_overflow_is_returned_not_acted_on() -> None:
    outbox, counters = _outbox(max_messages=1)
    assert outbox.offer("a") is Offer.SCHEDULE
    assert outbox.offer("b") is Offer.OVERFLOW  # the run decides to close it
    assert outbox.state is ConnectionState.OPEN
    assert counters.dropped == 1
    assert counters.queued == 1


def test_empty_frames_are_counted_like_any_other() -> None:
    outbox, counters = _outbox()
    assert outbox.offer("") is Offer.SCHEDULE
    assert outbox.offer(b"") is Offer.QUEUED
    assert counters.queued == 2
    assert outbox.take() == ""
    assert outbox.take() == b""
    assert counters.queued == 0


@pytest.mark.parametrize("flush", [True, False])
def test_unregister_keeps_the_queue_only_when_flushing(flush: bool) -> None:
    outbox, counters = _outbox()
    outbox.offer("a")
    assert outbox.unregister(1000, flush=flush)
    assert not outbox.unregister(1000, flush=flush)  # once
    if flush:
        assert outbox.state is ConnectionState.CLOSING
        assert outbox.offer("late") is Offer.DROPPED  # nothing new once unregistered
        assert outbox.take() == "a"
        outbox.release()
        assert outbox.idle
        outbox.finish()
        assert counters.dropped == 0  # "a" was written; "late" never entered
    else:
        assert outbox.state is ConnectionState.CLOSED
        assert outbox.take() is None
        assert counters.dropped == 1  # "a" was discarded
    assert outbox.state is ConnectionState.CLOSED
    assert counters.queued == 0
    assert counters.queued_bytes == 0


def test_an_idle_outbox_closes_at_once_even_when_flushing() -> None:
    outbox, _ = _outbox()
    assert outbox.unregister(1000, flush=True)
    assert outbox.state is ConnectionState.CLOSED
