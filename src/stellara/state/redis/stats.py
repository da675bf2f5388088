"""Statistics snapshots shared by the gateway processes on one Redis (the monitoring API).

Each process writes its snapshot every few seconds into one hash, `<prefix>:stats`::

    @epoch        "<epoch id>|<reset time>"                   the statistics' current epoch
    p:<process>   "<written at>|<epoch id>|<snapshot JSON>"   one per process

A reader takes the snapshots of the current epoch written in the last `max_age_s` and deletes
the others (processes that stopped, or that counted from before a reset). Times come from
Redis (`TIME`), so clock skew between machines cannot make a live snapshot look stale.

A reset starts a new epoch: one script empties the hash and records the epoch, then a message
on `<prefix>:stats-reset` tells every listening process to start again. A process that missed
the message finds out on its next write, which is refused while its epoch is not the current
one; so no count from before a reset reaches a reader after it. The hash expires `ttl_s` after
the last write, once every process has stopped. Each call is one script, bounded by
`timeout_s`; failures raise `StateBackendError`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from stellara.errors import StateBackendError
from stellara.state.base import Epoch
from stellara.state.redis.broadcast import Broadcast
from stellara.state.redis.pubsub import SUBSCRIBE_TIMEOUT_S

logger = logging.getLogger(__name__)

_EPOCH_FIELD = "@epoch"

# Redis TIME as "seconds.micros"; `lib` is prepended to every script.
_LIB = """
local function now()
  local t = redis.call('TIME')
  return string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
end
local function epoch_id(value)
  if not value then return false end
  return string.match(value, '^[^|]*')
end
"""

# KEYS: hash. ARGV: field, epoch id, snapshot, ttl_s. -> {stored 0|1, current epoch or ''}
_WRITE = """
local current = redis.call('HGET', KEYS[1], '@epoch')
local id = epoch_id(current)
if id and id ~= ARGV[2] then
  return {0, current}
end
redis.call('HSET', KEYS[1], ARGV[1], now() .. '|' .. ARGV[2] .. '|' .. ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {1, current or ''}
"""

# KEYS: hash. ARGV: max_age_s. -> {current epoch or '', field, snapshot, field, snapshot, ...}
_READ = """
local oldest = tonumber(now()) - tonumber(ARGV[1])
local entries = redis.call('HGETALL', KEYS[1])
local current = false
for i = 1, #entries, 2 do
  if entries[i] == '@epoch' then current = entries[i + 1] end
end
local id = epoch_id(current)
local out = {current or ''}
for i = 1, #entries, 2 do
  local field = entries[i]
  if field ~= '@epoch' then
    local at, epoch, body = string.match(entries[i + 1], '^([^|]*)|([^|]*)|(.*)$')
    if not at or tonumber(at) < oldest or (id and epoch ~= id) then
      redis.call('HDEL', KEYS[1], field)
    else
      out[#out + 1] = field
      out[#out + 1] = body
    end
  end
end
return out
"""

# KEYS: hash. ARGV: epoch id, ttl_s. -> the reset time
_RESET = """
local at = now()
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '@epoch', ARGV[1] .. '|' .. at)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return at
"""

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class RedisStatsShare:
    """This process's statistics snapshots in the shared hash, and resets for every process.

    Args:
        client: the state backend's client, decoding responses (the reset listener builds one
            connection of its own from its settings).
        key_prefix: the state backend's key prefix.
        max_age_s: snapshots written longer ago belong to processes that stopped.
        ttl_s: the hash's lifetime after the last write.
        timeout_s: the limit on each call, on top of the client's own timeouts.
    """

    def __init__(
        self,
        client: Redis,
        *,
        key_prefix: str,
        max_age_s: float = 10.0,
        ttl_s: int = 60,
        timeout_s: float = 1.0,
    ) -> None:
        self._key = f"{key_prefix}:stats"
        self._field = f"p:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._max_age_s = max_age_s
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._client = client
        self._where = _where(client)
        self._write = client.register_script(_LIB + _WRITE)
        self._read = client.register_script(_LIB + _READ)
        self._reset = client.register_script(_LIB + _RESET)
        self._callbacks: list[Callable[[Epoch], None]] = []
        self._broadcast = Broadcast(
            client,
            f"{key_prefix}:stats-reset",
            what="statistics resets",
            where=self._where,
            logger=logger,
        )
        self._broadcast.on_message(self._heard)

    async def write(self, epoch: str, snapshot: Mapping[str, Any]) -> Epoch | None:
        """Store this process's `snapshot`, counted since the reset `epoch`. Refused when
        another reset happened since: then the current epoch is returned, to start again."""
        args = [self._field, epoch, _encode(snapshot), self._ttl_s]
        stored, current = await self._run("write", self._write, args)
        return None if int(stored) else _epoch(current)

    async def read(self) -> tuple[Epoch | None, list[dict[str, Any]]]:
        """The current epoch (None before the first reset) and the live snapshots of the
        other processes."""
        reply = await self._run("read", self._read, [self._max_age_s])
        snapshots: list[dict[str, Any]] = []
        for field, body in zip(reply[1::2], reply[2::2], strict=True):
            if field == self._field:
                continue
            try:
                snapshots.append(_decode(body))
            except msgspec.DecodeError:
                logger.warning("ignoring a malformed statistics snapshot from %s", field)
        return _epoch(reply[0]), snapshots

    async def current_epoch(self) -> Epoch | None:
        """The current epoch (None before the first reset)."""
        value = await self._call("epoch", self._client.hget(self._key, _EPOCH_FIELD))
        return _epoch(value)

    async def reset(self, epoch: str) -> Epoch:
        """Start the epoch `epoch`: drop every snapshot; from now on only snapshots counted
        since this reset are stored. Then `announce` it."""
        at = await self._run("reset", self._reset, [epoch, self._ttl_s])
        return Epoch(epoch, float(at))

    async def announce(self, epoch: Epoch) -> None:
        """Tell the listening processes to start `epoch` now (best effort, never raises: the
        others learn it on their next write)."""
        await self._broadcast.publish(epoch._asdict(), f"statistics reset {epoch.id}")

    async def remove(self) -> None:
        """Withdraw this process's snapshot (it is stopping)."""
        await self._call("remove", self._client.hdel(self._key, self._field))

    def on_reset(self, callback: Callable[[Epoch], None]) -> None:
        """Call `callback(epoch)` for each reset another process announces."""
        self._callbacks.append(callback)

    async def start(self, *, timeout_s: float = SUBSCRIBE_TIMEOUT_S) -> bool:
        """Listen for resets; False when not subscribed after `timeout_s` (it keeps trying)."""
        return await self._broadcast.start(timeout_s=timeout_s)

    async def close(self) -> None:
        """Stop listening. The client belongs to the backend, which closes it."""
        await self._broadcast.close()

    async def _run(self, operation: str, script: AsyncScript, args: list[Any]) -> Any:
        return await self._call(operation, script(keys=[self._key], args=args))

    async def _call(self, operation: str, call: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call
        except (RedisError, OSError, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            raise StateBackendError(
                f"redis state backend at {self._where}: statistics {operation}: {detail}"
            ) from exc

    def _heard(self, fields: dict[str, Any]) -> None:
        try:
            epoch = Epoch(str(fields["id"]), float(fields["at"]))
        except (KeyError, TypeError, ValueError):
            logger.warning("ignoring a malformed statistics reset: %r", fields)
            return
        for callback in list(self._callbacks):
            callback(epoch)


def _epoch(value: str | None) -> Epoch | None:
    """`"<id>|<at>"` as an Epoch; None for no value."""
    if not value:
        return None
    epoch_id, _, at = value.partition("|")
    return Epoch(epoch_id, float(at))


def _where(client: Redis) -> str:
    """The server the client talks to, for messages (never the password)."""
    settings = client.connection_pool.connection_kwargs
    if "path" in settings:
        return f"unix://{settings['path']}"
    host, port = settings.get("host", "localhost"), settings.get("port", 6379)
    db = settings.get("db", 0)
    return f"redis://{host}:{port}/{db}"
