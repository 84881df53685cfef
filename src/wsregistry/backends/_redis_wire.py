"""What the Redis backend and emitters put on the wire: channels, keys, probes, scripts.

Pure code, no I/O and no Redis client, shared by the backend and the emitters
so both speak exactly the same protocol. Names and envelopes are every
backend's (``_wire``): a key or group becomes an injective, pattern-free name
(no ``:``, ``*``, ``?``, ``[`` or whitespace); names longer than
:data:`MAX_NAME` are replaced by ``h`` + their SHA-256 in channel and Redis key
names.

Layout under a namespace ``ns`` (``[A-Za-z0-9_.-]+``)::

    channels   ns:all            broadcasts
               ns:k:<name>       sends to a key (nodes with a local member subscribe)
               ns:g:<name>       group broadcasts (likewise)
               ns:n:<node>       connection-targeted sends and liveness probes
    keys       ns:nodes          zset node -> lease expiry (ms, Redis clock)
               ns:conns          hash connection id -> node
               ns:p:<name>       hash node -> live connections of the key on that node
               ns:nk:<node>      hash name -> its ns:p: key (the node's keys)
               ns:nc:<node>      set of the node's connection ids

A liveness probe is an envelope header with kind ``p`` and the probe's token as
its data.
"""

from __future__ import annotations

import re
from typing import Any

from .._types import Key
from ..envelope import Envelope, EnvelopeKind
from ._wire import (
    BINARY,
    HEADER,
    VERSION,
    WireError,
    key_of,
    name_of,
    pack,
    peek,
    unpack,
)
from ._wire import short as short_name

__all__ = [
    "MAX_NAME",
    "PROBE",
    "Layout",
    "WireError",
    "check_namespace",
    "key_of",
    "name_of",
    "pack",
    "pack_probe",
    "peek",
    "probe_token",
    "reap_args",
    "short",
    "unpack",
]

MAX_NAME = 128
"""Longest name used verbatim in a channel or Redis key name."""

PROBE = ord("p")
"""Kind code of a liveness probe (a node's message to itself)."""
_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]+")


def check_namespace(namespace: object) -> str:
    """Return ``namespace`` if valid, else raise ``TypeError``/``ValueError``."""
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be str, got {type(namespace).__name__}")
    if not _NAMESPACE.fullmatch(namespace) or len(namespace) > 64:
        raise ValueError(
            f"namespace must be 1-64 characters of A-Z a-z 0-9 _ . -, got {namespace!r}"
        )
    return namespace


def short(name: str) -> str:
    """``name`` itself if short, else a fixed-size digest of it (for Redis names)."""
    return short_name(name, MAX_NAME)


class Layout:
    """Channel and key names under one namespace."""

    __slots__ = ("all", "conns", "nodes", "prefix")

    def __init__(self, namespace: str) -> None:
        self.prefix = check_namespace(namespace) + ":"
        self.all = self.prefix + "all"
        self.nodes = self.prefix + "nodes"
        self.conns = self.prefix + "conns"

    def key_channel(self, key: Key) -> str:
        """Channel of sends to ``key``."""
        return self.prefix + "k:" + short(name_of(key))

    def group_channel(self, group: str) -> str:
        """Channel of broadcasts to ``group``."""
        return self.prefix + "g:" + short(name_of(group))

    def node_channel(self, node: str) -> str:
        """Channel of one node (``node`` is the node's name)."""
        return self.prefix + "n:" + node

    def presence_key(self, name: str) -> str:
        """Hash node -> count of the key named ``name``."""
        return self.prefix + "p:" + short(name)

    def node_keys(self, node: str) -> str:
        """Hash name -> presence key, of one node."""
        return self.prefix + "nk:" + node

    def node_conns(self, node: str) -> str:
        """Set of connection ids of one node."""
        return self.prefix + "nc:" + node

    def channel_of(self, envelope: Envelope) -> str:
        """Where an envelope of kind key/group/broadcast is published."""
        kind = envelope.kind
        if kind is EnvelopeKind.KEY:
            return self.key_channel(envelope.target)  # type: ignore[arg-type]
        if kind is EnvelopeKind.GROUP:
            return self.group_channel(envelope.target)  # type: ignore[arg-type]
        if kind is EnvelopeKind.BROADCAST:
            return self.all
        raise ValueError(f"{kind} envelopes go to a node channel")


def pack_probe(origin: bytes, token: str) -> bytes:
    """A liveness probe carrying ``token``."""
    data = token.encode("ascii")
    return HEADER.pack(VERSION, PROBE, BINARY, len(origin), 0, 0) + origin + data


def probe_token(data: bytes) -> str:
    """The token of a probe."""
    _version, _kind, _flags, origin_len, _t, _e = HEADER.unpack_from(data)
    return data[HEADER.size + origin_len :].decode("ascii", "replace")


# -- Lua scripts (run atomically on the Redis server; the clock is Redis's) -----------

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

HEARTBEAT = (
    _NOW
    + """
-- KEYS[1] nodes; ARGV[1] node, ARGV[2] lease ms. Returns 1 if the lease was still live.
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if old and tonumber(old) > now then return 1 end
return 0
"""
)

LEASE = (
    _NOW
    + """
-- KEYS[1] nodes; ARGV[1] node. Returns {lease expiry or -1, now} (ms, Redis clock).
local lease = redis.call('ZSCORE', KEYS[1], ARGV[1])
return {lease and math.floor(tonumber(lease)) or -1, now}
"""
)

_PURGE = """
local function purge(prefix, conns, node)
  local nk = prefix .. 'nk:' .. node
  local pairs_ = redis.call('HGETALL', nk)
  for i = 2, #pairs_, 2 do redis.call('HDEL', pairs_[i], node) end
  redis.call('DEL', nk)
  local nc = prefix .. 'nc:' .. node
  for _, id in ipairs(redis.call('SMEMBERS', nc)) do
    if redis.call('HGET', conns, id) == node then redis.call('HDEL', conns, id) end
  end
  redis.call('DEL', nc)
end
"""

PURGE_NODE = (
    _PURGE
    + """
-- KEYS[1] nodes, KEYS[2] conns; ARGV[1] prefix, ARGV[2] node, ARGV[3] '1' to drop its lease
purge(ARGV[1], KEYS[2], ARGV[2])
if ARGV[3] == '1' then redis.call('ZREM', KEYS[1], ARGV[2]) end
return 1
"""
)

REAP_BUDGET = 256
"""Most presence entries one reaper step removes: one step never blocks Redis for long."""

REAP = (
    _NOW
    + """
-- KEYS[1] nodes, KEYS[2] conns; ARGV[1] prefix, ARGV[2] budget, ARGV[3] node ('' = any
-- node whose lease expired). One bounded step: removes at most ARGV[2] entries of one
-- expired node, and the node itself once it has none left. Returns the work done
-- (0: nothing to reap); callers repeat while it is positive.
local node = ARGV[3]
if node == '' then
  local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)
  if #dead == 0 then return 0 end
  node = dead[1]
else
  local lease = redis.call('ZSCORE', KEYS[1], node)
  if not lease or tonumber(lease) > now then return 0 end
end
local budget = tonumber(ARGV[2])
local nk = ARGV[1] .. 'nk:' .. node
local fields = redis.call('HRANDFIELD', nk, budget, 'WITHVALUES')
for i = 1, #fields, 2 do
  redis.call('HDEL', fields[i + 1], node)
  redis.call('HDEL', nk, fields[i])
end
local work = #fields / 2
if work < budget then
  local ids = redis.call('SPOP', ARGV[1] .. 'nc:' .. node, budget - work)
  for _, id in ipairs(ids) do
    if redis.call('HGET', KEYS[2], id) == node then redis.call('HDEL', KEYS[2], id) end
  end
  work = work + #ids
end
if work < budget then
  redis.call('ZREM', KEYS[1], node)
  work = work + 1
end
return work
"""
)


def reap_args(layout: Layout, *, budget: int = REAP_BUDGET, node: str = "") -> tuple[Any, ...]:
    """``EVAL`` arguments (after the script) of one :data:`REAP` step (of ``node`` if given)."""
    return (2, layout.nodes, layout.conns, layout.prefix, budget, node)


COUNT = (
    _NOW
    + """
-- KEYS[1] presence hash of a key, KEYS[2] nodes. Live connections on live nodes.
local h = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #h, 2 do
  local lease = redis.call('ZSCORE', KEYS[2], h[i])
  if lease and tonumber(lease) > now then total = total + tonumber(h[i + 1]) end
end
return total
"""
)

ONLINE_KEYS = (
    _NOW
    + """
-- KEYS[1] nodes; ARGV[1] prefix. Names of keys with a connection on a live node.
local seen, out = {}, {}
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  for _, name in ipairs(redis.call('HKEYS', ARGV[1] .. 'nk:' .. node)) do
    if not seen[name] then seen[name] = true; out[#out + 1] = name end
  end
end
return out
"""
)

TO_CONNECTION = (
    _NOW
    + """
-- KEYS[1] conns, KEYS[2] nodes; ARGV[1] connection id, ARGV[2] prefix, ARGV[3] envelope.
-- Publishes to the node holding the connection; returns receivers, or -1 if unknown.
local node = redis.call('HGET', KEYS[1], ARGV[1])
if not node then return -1 end
local lease = redis.call('ZSCORE', KEYS[2], node)
if not lease or tonumber(lease) <= now then return -1 end
return redis.call('PUBLISH', ARGV[2] .. 'n:' .. node, ARGV[3])
"""
)
