"""The NATS backend's cluster-wide presence: JetStream entries plus node leases.

Design (subject names: ``_nats_wire``):

* **Entries.** Stream ``WSR_<ns>_P`` (limits retention, one message per
  subject) holds one message per live connection,
  ``ns.p.<key>.<node>.<connection>``, published (and acknowledged) when the
  connection is added and purged when it is removed, plus a member record
  ``ns.m.<node>`` per node. Entries are written once, never refreshed, so a
  heartbeat costs the same with 10 or 100,000 connections.
* **Leases.** Stream ``WSR_<ns>_L`` has ``max_age = presence_timeout``: each
  node republishes ``ns.l.<node>`` every ``heartbeat_interval``, and JetStream
  itself removes the lease of a node that stopped (crashed, partitioned) once it
  is ``presence_timeout`` old. The renewal carries
  ``Nats-Expected-Last-Subject-Sequence``: if the lease expired meanwhile (a
  long stall) the renewal fails and the node re-asserts everything.
* **Reads.** ``presence_count(key)`` asks for the subjects matching
  ``ns.p.<key>.*.*`` (a ``STREAM.INFO`` with ``subjects_filter``) and, at the
  same time, for the live leases; entries of nodes without a lease do not
  count. So a ``kill -9``-ed node's connections disappear from every read
  within ``presence_timeout`` of its last renewal, without anyone cleaning up.
* **Reaping.** At each heartbeat a node lists the member records (reading the
  stream's last sequence first) and the leases; for each member without a
  lease it purges that node's entries and member record, bounded by that
  sequence, so a node that comes back and re-asserts in the meantime keeps
  what it wrote after the snapshot.
* **Writer.** One task applies every change in order: additions and removals
  batched (the latest state of each connection wins), heartbeats, reaping, and
  a full *resync* (recreate the streams if they are gone, renew the lease,
  purge this node's entries and write them again) after start, a reconnect or a
  lost lease. Failures never raise to the hooks: the writer reports them,
  backs off and resyncs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

import nats.errors

from . import _nats_wire as wire

if TYPE_CHECKING:
    from nats.aio.client import Client

    from .._types import Key

logger = logging.getLogger("wsregistry")

_WRONG_LAST_SEQUENCE = 10071
_STREAM_NAME_IN_USE = 10058
_STREAM_NOT_FOUND = 10059
_CHUNK = 256


class Unreachable(Exception):
    """A request to NATS failed (disconnected, timed out, no responder)."""


class JetStreamError(Exception):
    """JetStream answered with an error."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"jetstream error {code}/{err_code}: {description}")
        self.code = code
        self.err_code = err_code


class Presence:
    """Presence entries and leases of one node, and cluster-wide reads."""

    def __init__(
        self,
        client: Client,
        layout: wire.Layout,
        node: str,
        *,
        heartbeat_interval: float,
        presence_timeout: float,
        replicas: int,
        storage: str,
        timeout: float,
        on_error: Callable[[BaseException | None, str], None],
        backoff: Callable[[int], float],
    ) -> None:
        self._client = client
        self._layout = layout
        self._me = node
        self._heartbeat = heartbeat_interval
        self._ttl = presence_timeout
        self._replicas = replicas
        self._storage = storage
        self._timeout = timeout
        self._on_error = on_error
        self._backoff = backoff
        self.conns: dict[str, Key] = {}
        """This node's live connections, as the writer must make them known."""
        self._ops: dict[str, tuple[Key, bool]] = {}
        self._waiters: list[asyncio.Event] = []
        self._written: dict[str, str] = {}
        self._resync = True
        self._wake = asyncio.Event()
        self._lease_seq = 0
        self.stopped = False
        self.written = asyncio.Event()
        """Set once the first resync has written this node's presence."""
        self.stats: dict[str, int] = dict.fromkeys(
            ("resyncs", "lease_lost", "reaped", "presence_failures"), 0
        )

    # -- changes (synchronous; the writer applies them) --------------------------------

    def add(self, connection_id: str, key: Key) -> asyncio.Event:
        """Record a connection; the event is set once the writer has tried to publish it."""
        self.conns[connection_id] = key
        self._ops[connection_id] = (key, True)
        event = asyncio.Event()
        self._waiters.append(event)
        self._wake.set()
        return event

    def remove(self, connection_id: str, key: Key) -> None:
        """Forget a connection; the writer purges its entry."""
        self.conns.pop(connection_id, None)
        self._ops[connection_id] = (key, False)
        self._wake.set()

    def resync(self) -> None:
        """Ask the writer to write everything again (after a reconnect)."""
        self._resync = True
        self._wake.set()

    def stop(self) -> None:
        """Make :meth:`run` return at its next step.

        Cancellation alone is not enough: on Python < 3.12 ``asyncio.wait_for``
        swallows a cancellation that arrives as its inner wait completes.
        """
        self.stopped = True
        self._wake.set()

    # -- the writer ----------------------------------------------------------------------

    async def run(self) -> None:
        """Apply changes, heartbeats and reaping until cancelled or stopped."""
        client = self._client
        next_beat = time.monotonic() + self._heartbeat
        failures = 0
        while not self.stopped:
            if not (self._ops or self._resync):
                delay = max(0.0, next_beat - time.monotonic())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            if self.stopped:
                break
            if not client.is_connected:
                self._resync = True
                self._release(self._take_waiters())
                await asyncio.sleep(min(self._heartbeat, 0.05 * 2 ** min(failures, 5)))
                failures += 1
                continue
            try:
                if self._resync:
                    await self._write_all()
                    next_beat = time.monotonic() + self._heartbeat
                elif self._ops:
                    await self._apply()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self._heartbeat
                    await self._renew()
                    await self._reap()
                failures = 0
            except (Unreachable, JetStreamError) as exc:
                self._resync = True
                self.stats["presence_failures"] += 1
                self._on_error(exc, "presence write failed")
                logger.warning("nats presence write failed; will resync: %r", exc)
                await asyncio.sleep(self._backoff(failures))
                failures += 1

    def _take_waiters(self) -> list[asyncio.Event]:
        waiters, self._waiters = self._waiters, []
        return waiters

    @staticmethod
    def _release(waiters: Iterable[asyncio.Event]) -> None:
        for event in waiters:
            event.set()

    async def _apply(self) -> None:
        ops, self._ops = self._ops, {}
        waiters = self._take_waiters()
        layout, me = self._layout, self._me
        calls: list[Coroutine[Any, Any, Any]] = []
        try:
            for conn_id, (key, present) in ops.items():
                if present:
                    subject = layout.entry(key, me, conn_id)
                    self._written[conn_id] = subject
                    calls.append(self._put(subject, wire.name_of(key).encode("ascii")))
                else:
                    subject = self._written.pop(conn_id, "") or layout.entry(key, me, conn_id)
                    calls.append(self._purge(layout.presence_stream, subject))
            await _gather(calls)
        finally:
            self._release(waiters)

    async def _write_all(self) -> None:
        """Resync: streams, lease, member record, then this node's entries from scratch."""
        self._resync = False
        snapshot = dict(self.conns)
        self._ops.clear()
        waiters = self._take_waiters()
        layout, me = self._layout, self._me
        try:
            await self._ensure_streams()
            ack = await self._put(layout.lease(me), b"")
            self._lease_seq = int(ack["seq"])
            await self._put(layout.member(me), b"")
            await self._purge(layout.presence_stream, layout.node_entries(me))
            self._written = {}
            calls: list[Coroutine[Any, Any, Any]] = []
            for conn_id, key in snapshot.items():
                subject = layout.entry(key, me, conn_id)
                self._written[conn_id] = subject
                calls.append(self._put(subject, wire.name_of(key).encode("ascii")))
            await _gather(calls)
        except BaseException:
            self._resync = True
            raise
        finally:
            self._release(waiters)
        self.stats["resyncs"] += 1
        self.written.set()

    async def _renew(self) -> None:
        layout = self._layout
        try:
            ack = await self._put(
                layout.lease(self._me),
                b"",
                headers={"Nats-Expected-Last-Subject-Sequence": str(self._lease_seq)},
            )
        except JetStreamError as exc:
            if exc.err_code != _WRONG_LAST_SEQUENCE:
                raise
            self.stats["lease_lost"] += 1
            logger.warning("node %s lost its nats presence lease; re-asserting", self._me)
            self.resync()
            return
        self._lease_seq = int(ack["seq"])

    async def _reap(self) -> None:
        layout = self._layout
        members, last_seq = await self._subjects(layout.presence_stream, layout.members)
        if len(members) <= 1:
            return
        live = await self.live_nodes()
        for subject in members:
            node = layout.last_token(subject)
            if node == self._me or node in live:
                continue
            await self._purge(layout.presence_stream, layout.node_entries(node), last_seq + 1)
            await self._purge(layout.presence_stream, layout.member(node), last_seq + 1)
            self.stats["reaped"] += 1
            logger.info("reaped the presence of node %s (its lease expired)", node)

    async def leave(self) -> None:
        """Remove this node's lease, entries and member record (at shutdown)."""
        layout, me = self._layout, self._me
        await self._purge(layout.lease_stream, layout.lease(me))
        await self._purge(layout.presence_stream, layout.node_entries(me))
        await self._purge(layout.presence_stream, layout.member(me))

    # -- reads ---------------------------------------------------------------------------

    async def live_nodes(self) -> set[str]:
        """Tokens of the nodes whose lease has not expired."""
        subjects, _ = await self._subjects(self._layout.lease_stream, self._layout.leases)
        return {self._layout.last_token(subject) for subject in subjects}

    async def count(self, key: Key) -> int:
        """Live connections of ``key`` on nodes with a live lease (two concurrent requests)."""
        layout = self._layout
        entries, live = await asyncio.gather(
            self._subjects(layout.presence_stream, layout.key_entries(key)), self.live_nodes()
        )
        return sum(1 for subject in entries[0] if layout.split_entry(subject)[1] in live)

    async def keys(self) -> frozenset[Key]:
        """Every key with a connection on a node with a live lease."""
        layout = self._layout
        entries, live = await asyncio.gather(
            self._subjects(layout.presence_stream, layout.entries), self.live_nodes()
        )
        tokens: dict[str, str] = {}
        for subject in entries[0]:
            try:
                token, node = layout.split_entry(subject)
            except wire.WireError:
                continue
            if node in live:
                tokens.setdefault(token, subject)
        keys: set[Key] = set()
        for token, subject in tokens.items():
            try:
                if token.startswith("h"):  # hashed: the entry's payload has the full token
                    token = (await self._last_data(layout.presence_stream, subject)).decode()
                keys.add(wire.key_of(token))
            except (wire.WireError, UnicodeError):
                continue
        return frozenset(keys)

    # -- JetStream requests --------------------------------------------------------------

    async def _ensure_streams(self) -> None:
        layout = self._layout
        ttl_ns = int(self._ttl * 1e9)
        for name, subjects, extra in (
            (layout.presence_stream, [layout.entries, layout.members], {}),
            (layout.lease_stream, [layout.leases], {"max_age": ttl_ns, "duplicate_window": ttl_ns}),
        ):
            config = {
                "name": name,
                "subjects": subjects,
                "retention": "limits",
                "storage": self._storage,
                "num_replicas": self._replicas,
                "max_msgs_per_subject": 1,
                "discard": "old",
                **extra,
            }
            try:  # exists? (creating an existing R3 stream fails while a server is down)
                await self._api(f"$JS.API.STREAM.INFO.{name}", {})
                continue
            except JetStreamError as exc:
                if exc.err_code != _STREAM_NOT_FOUND:
                    raise
            try:
                await self._api(f"$JS.API.STREAM.CREATE.{name}", config)
            except JetStreamError as exc:
                if exc.err_code != _STREAM_NAME_IN_USE:
                    raise

    async def _subjects(self, stream: str, subject_filter: str) -> tuple[dict[str, int], int]:
        """Subjects of ``stream`` matching ``subject_filter``, and its last sequence."""
        subjects: dict[str, int] = {}
        last_seq = 0
        while True:
            try:
                info = await self._api(
                    f"$JS.API.STREAM.INFO.{stream}",
                    {"subjects_filter": subject_filter, "offset": len(subjects)},
                )
            except JetStreamError as exc:
                if exc.err_code == _STREAM_NOT_FOUND:
                    self.resync()  # the server lost its state (a restart): rewrite it
                    return {}, 0
                raise
            state = info.get("state", {})
            if not subjects:
                last_seq = int(state.get("last_seq", 0))
            page = state.get("subjects") or {}
            subjects.update(page)
            if not page or len(subjects) >= int(info.get("total", 0)):
                return subjects, last_seq

    async def _last_data(self, stream: str, subject: str) -> bytes:
        reply = await self._api(f"$JS.API.STREAM.MSG.GET.{stream}", {"last_by_subj": subject})
        return base64.b64decode(reply.get("message", {}).get("data", ""))

    async def _purge(self, stream: str, subject: str, seq: int | None = None) -> None:
        body: dict[str, Any] = {"filter": subject}
        if seq is not None:
            body["seq"] = seq
        try:
            await self._api(f"$JS.API.STREAM.PURGE.{stream}", body)
        except JetStreamError as exc:
            if exc.err_code != _STREAM_NOT_FOUND:
                raise

    async def _put(
        self, subject: str, data: bytes, *, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        return await self._request(subject, data, headers)

    async def _api(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request(subject, json.dumps(body).encode(), None)

    async def _request(
        self, subject: str, data: bytes, headers: dict[str, str] | None
    ) -> dict[str, Any]:
        try:
            msg = await self._client.request(subject, data, timeout=self._timeout, headers=headers)
        except (nats.errors.Error, OSError, asyncio.TimeoutError) as exc:
            raise Unreachable(f"{subject[:60]}: {exc!r}") from exc
        try:
            reply: dict[str, Any] = json.loads(msg.data)
        except ValueError as exc:
            raise Unreachable(f"{subject[:60]}: not a JetStream reply") from exc
        error = reply.get("error")
        if error:
            raise JetStreamError(
                int(error.get("code", 0)),
                int(error.get("err_code", 0)),
                str(error.get("description", "")),
            )
        return reply


async def _gather(calls: list[Coroutine[Any, Any, Any]]) -> None:
    """Run ``calls`` concurrently in chunks; raise the first failure after all finished."""
    for start in range(0, len(calls), _CHUNK):
        results = await asyncio.gather(*calls[start : start + _CHUNK], return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
