"""Emitters: publish to a Redis-backed cluster from code that holds no sockets.

A worker, a script, a Celery task or a plain thread can reach every connection
of a key, a group or everyone, using the same channels, envelope format,
serializer rules and namespace as :class:`~wsregistry.backends.redis.RedisBackend`.
:class:`RedisEmitter` is async (asyncio); :class:`SyncRedisEmitter` uses redis-py's
blocking client.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .._encode import encode, json_serializer
from .._types import Key, Serializer, check_group, check_key
from ..envelope import Envelope, EnvelopeKind
from ..errors import BackendUnavailable, NotConnected
from . import _redis_wire as wire

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["RedisEmitter", "SyncRedisEmitter"]


class _Emitter:
    """What both emitters share: options, encoding, envelope building."""

    def __init__(
        self,
        *,
        namespace: str,
        serializer: Serializer | None,
        max_message_bytes: int,
    ) -> None:
        if serializer is not None and not callable(serializer):
            raise TypeError("serializer must be callable: message -> str | bytes")
        if not isinstance(max_message_bytes, int) or max_message_bytes < 1:
            raise ValueError("max_message_bytes must be a positive int")
        self.namespace = namespace
        self.layout = wire.Layout(namespace)
        self.serializer: Serializer = serializer if serializer is not None else json_serializer
        self.max_message_bytes = max_message_bytes
        self.origin = "emitter-" + uuid.uuid4().hex
        self._origin = self.origin.encode("ascii")

    def _packed(self, envelope: Envelope) -> bytes:
        data = wire.pack(envelope, self._origin)
        if len(data) > self.max_message_bytes:
            raise ValueError(
                f"message of {len(data)} bytes exceeds max_message_bytes={self.max_message_bytes}"
            )
        return data

    def _to_key(self, key: Key, message: Any) -> tuple[str, bytes]:
        key = check_key(key)
        payload = encode(message, self.serializer)
        envelope = Envelope(EnvelopeKind.KEY, payload, key, None, self.origin)
        return self.layout.key_channel(key), self._packed(envelope)

    def _to_all(self, message: Any, group: str | None, exclude: str | None) -> tuple[str, bytes]:
        if exclude is not None and not isinstance(exclude, str):
            raise TypeError("exclude must be a connection id (str) or None")
        payload = encode(message, self.serializer)
        if group is None:
            envelope = Envelope(EnvelopeKind.BROADCAST, payload, None, exclude, self.origin)
        else:
            group = check_group(group)
            envelope = Envelope(EnvelopeKind.GROUP, payload, group, exclude, self.origin)
        return self.layout.channel_of(envelope), self._packed(envelope)

    def _to_connection(self, connection_id: str, message: Any) -> tuple[Any, ...]:
        if not isinstance(connection_id, str):
            raise TypeError(f"connection_id must be str, got {type(connection_id).__name__}")
        payload = encode(message, self.serializer)
        envelope = Envelope(EnvelopeKind.CONNECTION, payload, connection_id, None, self.origin)
        layout = self.layout
        data = self._packed(envelope)
        return (
            wire.TO_CONNECTION,
            2,
            layout.conns,
            layout.nodes,
            connection_id,
            layout.prefix,
            data,
        )

    def _count_args(self, key: Key) -> tuple[Any, ...]:
        layout = self.layout
        return (wire.COUNT, 2, layout.presence_key(wire.name_of(check_key(key))), layout.nodes)


class RedisEmitter(_Emitter):
    """Publish to a registry cluster from asyncio code without sockets.

    Use it as ``async with RedisEmitter(url) as emitter:`` or call
    :meth:`aclose`. Each call is one Redis round trip; calls from one task keep
    their order.

    Args:
        url: the Redis URL the registries use (``redis://``, ``rediss://``).
        namespace: the registries' namespace.
        serializer: must match the registries' serializer (default: compact JSON).
        max_message_bytes: largest encoded message; bigger ones raise ``ValueError``.
        client: an existing ``redis.asyncio.Redis`` to use instead of ``url``
            (not closed by :meth:`aclose`).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "wsregistry",
        serializer: Serializer | None = None,
        max_message_bytes: int = 4 * 1024 * 1024,
        client: aioredis.Redis | None = None,
    ) -> None:
        super().__init__(
            namespace=namespace, serializer=serializer, max_message_bytes=max_message_bytes
        )
        self._owned = client is None
        self._client = (
            client
            if client is not None
            else aioredis.Redis.from_url(url, retry=redis.asyncio.retry.Retry(NoBackoff(), 0))
        )

    async def __aenter__(self) -> RedisEmitter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the Redis connections this emitter opened. Idempotent."""
        if self._owned:
            await self._client.aclose()

    async def send(self, key: Key, message: Any, *, require: bool = False) -> int:
        """Queue ``message`` to every connection of ``key`` on every node.

        Returns:
            How many nodes received it (nodes with a live connection of the key);
            ``0`` usually means the key is offline.

        Raises:
            NotConnected: ``require=True`` and the key is offline everywhere
                (checked first; nothing is sent then).
            SerializationError: the message cannot be serialised.
            BackendUnavailable: Redis cannot be reached.
        """
        channel, data = self._to_key(key, message)
        if require and not await self.online_count(key):
            raise NotConnected(key)
        return int(await self._run(self._client.publish(channel, data)))

    async def broadcast(
        self, message: Any, *, group: str | None = None, exclude: str | None = None
    ) -> int:
        """Queue ``message`` to everyone, or to ``group``'s members, on every node.

        Returns:
            How many nodes received it.

        Raises:
            SerializationError, BackendUnavailable: as for :meth:`send`.
        """
        channel, data = self._to_all(message, group, exclude)
        return int(await self._run(self._client.publish(channel, data)))

    async def send_to_connection(self, connection_id: str, message: Any) -> bool:
        """Queue ``message`` to one connection, on whichever node holds it.

        Returns:
            ``True`` if a live node holds the connection and received the message.
        """
        args = self._to_connection(connection_id, message)
        return int(await self._run(self._client.eval(*args))) > 0

    async def online_count(self, key: Key) -> int:
        """How many live connections ``key`` has across the cluster."""
        return int(await self._run(self._client.eval(*self._count_args(key))))

    async def is_online(self, key: Key) -> bool:
        """Whether ``key`` has a live connection anywhere in the cluster."""
        return await self.online_count(key) > 0

    async def _run(self, call: Any) -> Any:
        try:
            return await call
        except (RedisError, OSError) as exc:
            raise BackendUnavailable("redis", str(exc)) from exc


class SyncRedisEmitter(_Emitter):
    """:class:`RedisEmitter` for threads, scripts and Celery workers (blocking calls).

    Thread-safe (redis-py's client pools its connections). Same arguments as
    :class:`RedisEmitter`, with ``client`` a blocking ``redis.Redis``; usable as a
    ``with`` block or closed with :meth:`close`.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "wsregistry",
        serializer: Serializer | None = None,
        max_message_bytes: int = 4 * 1024 * 1024,
        client: redis.Redis | None = None,
    ) -> None:
        super().__init__(
            namespace=namespace, serializer=serializer, max_message_bytes=max_message_bytes
        )
        self._owned = client is None
        self._client = (
            client
            if client is not None
            else redis.Redis.from_url(url, retry=redis.retry.Retry(NoBackoff(), 0))
        )

    def __enter__(self) -> SyncRedisEmitter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the Redis connections this emitter opened. Idempotent."""
        if self._owned:
            self._client.close()

    def send(self, key: Key, message: Any, *, require: bool = False) -> int:
        """Blocking :meth:`RedisEmitter.send`."""
        channel, data = self._to_key(key, message)
        if require and not self.online_count(key):
            raise NotConnected(key)
        return int(self._run(self._client.publish, channel, data))

    def broadcast(
        self, message: Any, *, group: str | None = None, exclude: str | None = None
    ) -> int:
        """Blocking :meth:`RedisEmitter.broadcast`."""
        channel, data = self._to_all(message, group, exclude)
        return int(self._run(self._client.publish, channel, data))

    def send_to_connection(self, connection_id: str, message: Any) -> bool:
        """Blocking :meth:`RedisEmitter.send_to_connection`."""
        return int(self._run(self._client.eval, *self._to_connection(connection_id, message))) > 0

    def online_count(self, key: Key) -> int:
        """Blocking :meth:`RedisEmitter.online_count`."""
        return int(self._run(self._client.eval, *self._count_args(key)))

    def is_online(self, key: Key) -> bool:
        """Blocking :meth:`RedisEmitter.is_online`."""
        return self.online_count(key) > 0

    def _run(self, func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except (RedisError, OSError) as exc:
            raise BackendUnavailable("redis", str(exc)) from exc
