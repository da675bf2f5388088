"""The shared (L2) level of the answer cache in Redis, and its invalidation broadcast.

`get` receives only the cache key, so the value lives under a name derived from the key alone;
a second, empty key names the entry's scope and model so that management can clear by them::

    {prefix}:cv:{<key>}                 the value (opaque bytes), expiring after the entry's TTL
    {prefix}:c:<scope>:<model>:{<key>}  the marker: empty, the same TTL, found by `SCAN MATCH`

Both names carry the key as their hash tag, so one script writes both on one Cluster slot
(a scope tag would split them: the value's name cannot know the scope). Scope, model and key
are percent-encoded, so none can close the tag, add a `:` or a glob character. `get` is one
`GET`, `put` one script that writes both keys and, when it replaced a value, publishes that;
`clear` (an admin path) walks the markers with `SCAN … COUNT` and unlinks in batches. `delete`
unlinks the value only: its marker cannot be named from the key, holds nothing, and expires
with the value; `clear` counts values, so a leftover marker is never counted.

Removals are published on `{prefix}:cache:invalidate` as JSON (see `_Message`) carrying the
sender's id, so a store ignores its own messages: its caller already dropped its L1 copies.
A background task per store (`pubsub.ChannelListener`) listens and calls the
`on_invalidation` callbacks. It reconnects by itself; while disconnected it cannot hear
anything, so after every reconnection it calls the callbacks with `Invalidation()` (drop every
L1 copy) before serving messages again.

Semantic-index entries (Redis has no vector search: each process searches its own index) are
kept so that every process can rebuild its index::

    {prefix}:sem    a stream, capped near `semantic_max_entries` (`XADD MAXLEN ~`); each entry
                    holds the namespace `n`, the cache key `k`, the text `t`, the float32
                    vector bytes `v` and the TTL `ttl` in ms, counted from the entry's id

`put_semantic` appends and publishes the entry on `{prefix}:cache:semantic` (JSON, the vector
in base64, with the sender's id) in one round trip; a second listener hands the others' entries
to the `on_semantic` callbacks. `load_semantic` reads the newest entries back (`XREVRANGE`) and
leaves out those whose TTL has passed by the server's clock. An entry whose answer is gone by
the time it matches is dropped by its user (`AnswerCache.lookup`), so the stream is not
trimmed on `clear`. A listener that reconnects may have missed entries: those only cost misses.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from urllib.parse import quote

import msgspec
from redis.asyncio import Redis
from redis.client import NEVER_DECODE
from redis.exceptions import RedisError

from stellara.errors import StateBackendError
from stellara.state.base import Invalidation
from stellara.state.redis.pipelined import PipelinedRedis
from stellara.state.redis.pubsub import SUBSCRIBE_TIMEOUT_S, ChannelListener

logger = logging.getLogger(__name__)

_SEMANTIC_MAX_ENTRIES = 10_000  # the semantic level's default `max_entries`
_SCAN_COUNT = 1_000  # keys examined per SCAN call; also the UNLINK batch size
_GLOB_SPECIALS = str.maketrans({c: "\\" + c for c in "*?[]\\"})

# KEYS: value, marker. ARGV: value, ttl ms, channel, message. EXISTS first: a replaced value
# may sit in other processes' L1s, so they hear of it; a new one cannot.
_PUT_SCRIPT = """
local replaced = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[2], '', 'PX', ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if replaced == 1 then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return replaced
"""


class _Message(msgspec.Struct, frozen=True, omit_defaults=True):
    """One broadcast removal, e.g. `{"origin":"3f…","scope":"alice"}`; absent fields are None."""

    origin: str
    key: str | None = None
    scope: str | None = None
    model: str | None = None


class _SemanticMessage(msgspec.Struct, frozen=True):
    """One broadcast semantic entry; `vector` (float32 bytes) travels as base64."""

    origin: str
    namespace: str
    key: str
    text: str
    vector: bytes


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Message).decode
_decode_semantic = msgspec.json.Decoder(_SemanticMessage).decode


def _part(text: str) -> str:
    """A key component without `:`, `{`, `}` or glob characters."""
    return quote(text, safe="")


class RedisCacheStore:
    """`CacheStore` on the state backend's Redis, shared by every gateway process.

    `get` and `put` go through the pipelined connection, the rest through the backend's pooled
    client (both with its short timeouts, so a slow Redis costs a request little); values come
    back as bytes although that client decodes replies to text. The listener has a
    one-connection pool of its own built from the same settings but without redis-py's retry
    (a silent reconnection would hide that messages were missed) and without decoding. Every
    command failure surfaces as `StateBackendError`.

    Args:
        client: the backend's client.
        commands: the backend's pipelined connection, for `get` and `put` (the request path).
        key_prefix: the backend's key prefix (no `{` or `}`).
        where: the server, password redacted, for messages.
        ping_interval_s: how long the listener waits in silence before it pings Redis; it
            reconnects when three intervals pass without a reply (a vanished host sends no
            reset, so only a missing answer shows it).
        semantic_max_entries: about how many semantic entries the stream keeps.
    """

    def __init__(
        self,
        client: Redis,
        commands: PipelinedRedis,
        *,
        key_prefix: str,
        where: str,
        ping_interval_s: float = 5.0,
        semantic_max_entries: int = _SEMANTIC_MAX_ENTRIES,
    ) -> None:
        if "{" in key_prefix or "}" in key_prefix:
            raise ValueError(f"key_prefix {key_prefix!r} must not contain '{{' or '}}'")
        self._client = client
        self._prefix = key_prefix
        self._where = where
        self._channel = f"{key_prefix}:cache:invalidate"
        self._origin = uuid.uuid4().hex
        self._put = client.register_script(_PUT_SCRIPT)
        self._commands = commands
        self._callbacks: list[Callable[[Invalidation], None]] = []
        self._listener = ChannelListener(
            client,
            self._channel,
            self._handle,
            where=where,
            what="cache invalidations",
            logger=logger,
            on_resumed=lambda: self._dispatch(Invalidation()),
            resumed_note="; dropping every L1 copy, as some may have been missed",
            ping_interval_s=ping_interval_s,
        )
        self._semantic_key = f"{key_prefix}:sem"
        self._semantic_channel = f"{key_prefix}:cache:semantic"
        self._semantic_max_entries = semantic_max_entries
        self._semantic_callbacks: list[Callable[[str, str, str, bytes], None]] = []
        self._semantic_listener = ChannelListener(
            client,
            self._semantic_channel,
            self._handle_semantic,
            where=where,
            what="semantic cache entries",
            logger=logger,
            resumed_note="; entries stored meanwhile stay unknown here",
            ping_interval_s=ping_interval_s,
        )

    @property
    def is_listening(self) -> bool:
        """Whether the listener is subscribed now, i.e. would hear a removal published now."""
        return self._listener.is_listening

    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, or None when absent or expired."""
        self._start_listener()
        try:
            value: bytes | None = await self._commands.execute("GET", self._value_key(key))
        except (RedisError, OSError) as exc:
            raise self._error("get", exc) from exc
        return value

    async def put(self, key: str, value: bytes, ttl_s: float, *, scope: str, model: str) -> None:
        """Store `value` for `ttl_s` seconds; replacing a value tells the other processes."""
        self._start_listener()
        keys = [self._value_key(key), self._marker_key(scope, model, key)]
        ttl_ms = max(1, math.ceil(ttl_s * 1000))
        args: list[bytes | str | int] = [value, ttl_ms, self._channel, self._message(key=key)]
        try:
            await self._commands.run_script(self._put, keys, args)
        except (RedisError, OSError) as exc:
            raise self._error("put", exc) from exc

    async def delete(self, key: str) -> None:
        """Remove one entry and tell the other processes."""
        self._start_listener()
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.unlink(self._value_key(key))
                pipe.publish(self._channel, self._message(key=key))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._error("delete", exc) from exc

    async def clear(self, *, scope: str | None = None, model: str | None = None) -> int:
        """Remove every entry, or those of `scope` and/or `model`; tell the other processes.

        Walks the markers with `SCAN`, so it costs time in proportion to the whole database:
        meant for management, not for requests. An entry stored while the walk runs may stay.

        Returns:
            How many values were removed.
        """
        self._start_listener()
        pattern = self._marker_pattern(scope, model)
        removed = 0
        try:
            cursor = 0
            while True:
                cursor, markers = await self._client.scan(cursor, match=pattern, count=_SCAN_COUNT)
                if markers:
                    removed += await self._unlink([str(marker) for marker in markers])
                if cursor == 0:
                    break
            await self._client.publish(self._channel, self._message(scope=scope, model=model))
        except (RedisError, OSError) as exc:
            raise self._error("clear", exc) from exc
        return removed

    def on_invalidation(self, callback: Callable[[Invalidation], None]) -> None:
        """Call `callback` for every removal another process broadcasts, and with
        `Invalidation()` after the listener reconnects (it may have missed some).

        Starts the listener now when called inside an event loop, else on the next call of
        any other method; `start` waits until it is subscribed.
        """
        self._callbacks.append(callback)
        self._start_listener()

    async def start(self, *, timeout_s: float = SUBSCRIBE_TIMEOUT_S) -> bool:
        """Start the listener (even without callbacks) and wait until it is subscribed.

        Call at start-up so that removals published from then on are heard. When Redis does
        not answer in `timeout_s`, returns False; the listener keeps trying by itself.
        """
        return await self._listener.wait_listening(timeout_s)

    async def put_semantic(
        self, namespace: str, key: str, text: str, vector: bytes, ttl_s: float
    ) -> None:
        """Append a semantic entry to the stream and tell the other processes (one round
        trip)."""
        self._start_listener()
        fields: dict[str | bytes, str | bytes | int] = {
            "n": namespace,
            "k": key,
            "t": text,
            "v": vector,
            "ttl": max(1, math.ceil(ttl_s * 1000)),
        }
        message = _encode(_SemanticMessage(self._origin, namespace, key, text, vector))
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.xadd(
                    self._semantic_key,
                    fields,  # type: ignore[arg-type]
                    maxlen=self._semantic_max_entries,
                    approximate=True,
                )
                pipe.publish(self._semantic_channel, message)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._error("put_semantic", exc) from exc

    def on_semantic(self, callback: Callable[[str, str, str, bytes], None]) -> None:
        """Call `callback(namespace, key, text, vector)` for every semantic entry another
        process stores. Starts listening as `on_invalidation` does."""
        self._semantic_callbacks.append(callback)
        self._start_listener()

    async def load_semantic(self, limit: int) -> list[tuple[str, str, str, bytes]]:
        """The newest unexpired semantic entries, at most `limit`, oldest first.

        With `on_semantic` callbacks, first waits (bounded) until their listener is
        subscribed, so an entry stored during the load is heard if it is not read.
        """
        self._start_listener()
        if self._semantic_callbacks:
            await self._semantic_listener.wait_listening()
        if limit < 1:
            return []
        try:
            seconds, micros = await self._client.time()
            # NEVER_DECODE: the vectors are raw bytes
            replies: list[tuple[bytes, dict[bytes, bytes]]] = await self._client.execute_command(  # type: ignore[no-untyped-call]
                "XREVRANGE", self._semantic_key, "+", "-", "COUNT", limit, **{NEVER_DECODE: []}
            )
        except (RedisError, OSError) as exc:
            raise self._error("load_semantic", exc) from exc
        now_ms = seconds * 1000 + micros // 1000
        entries: list[tuple[str, str, str, bytes]] = []
        for entry_id, fields in reversed(replies):
            try:
                added_ms = int(entry_id.split(b"-", 1)[0])
                if added_ms + int(fields[b"ttl"]) <= now_ms:
                    continue
                namespace, key = fields[b"n"].decode(), fields[b"k"].decode()
                entries.append((namespace, key, fields[b"t"].decode(), fields[b"v"]))
            except (KeyError, ValueError):  # UnicodeDecodeError is a ValueError
                logger.warning("ignoring a malformed semantic cache entry %r", entry_id)
        return entries

    async def close(self) -> None:
        """Stop the listeners. The client belongs to the backend, which closes it."""
        await self._listener.close()
        await self._semantic_listener.close()

    def _value_key(self, key: str) -> str:
        return f"{self._prefix}:cv:{{{_part(key)}}}"

    def _marker_key(self, scope: str, model: str, key: str) -> str:
        return f"{self._prefix}:c:{_part(scope)}:{_part(model)}:{{{_part(key)}}}"

    def _marker_pattern(self, scope: str | None, model: str | None) -> str:
        """`SCAN MATCH` for the markers of `scope` and `model` (None: any). An encoded part
        holds no `:`, so each `*` can only stand for one whole part."""
        prefix = self._prefix.translate(_GLOB_SPECIALS)
        scope_part = "*" if scope is None else _part(scope)
        model_part = "*" if model is None else _part(model)
        return f"{prefix}:c:{scope_part}:{model_part}:{{*"

    def _message(
        self, *, key: str | None = None, scope: str | None = None, model: str | None = None
    ) -> bytes:
        return _encode(_Message(self._origin, key, scope, model))

    async def _unlink(self, markers: list[str]) -> int:
        """Unlink markers and their values (pairwise: one slot each); how many values went."""
        async with self._client.pipeline(transaction=False) as pipe:
            for marker in markers:
                pipe.unlink(f"{self._prefix}:cv:{marker[marker.index('{') :]}")
                pipe.unlink(marker)
            replies: list[int] = await pipe.execute()
        return sum(replies[::2])

    def _error(self, operation: str, exc: BaseException) -> StateBackendError:
        detail = str(exc) or type(exc).__name__
        return StateBackendError(
            f"redis state backend at {self._where}: cache {operation}: {detail}"
        )

    def _start_listener(self, *, force: bool = False) -> None:
        """Start the listener if it is wanted (a callback, or `force`) and a loop runs."""
        if force or self._callbacks:
            self._listener.start()
        if self._semantic_callbacks:
            self._semantic_listener.start()

    def _handle(self, data: bytes) -> None:
        try:
            message = _decode(data)
        except msgspec.DecodeError:
            logger.warning("ignoring a malformed cache invalidation: %r", data[:200])
            return
        if message.origin != self._origin:  # our own removals were applied by our caller
            self._dispatch(Invalidation(message.key, message.scope, message.model))

    def _handle_semantic(self, data: bytes) -> None:
        try:
            message = _decode_semantic(data)
        except msgspec.DecodeError:
            logger.warning("ignoring a malformed semantic cache entry: %r", data[:200])
            return
        if message.origin == self._origin:  # our own entries are in our index already
            return
        for callback in list(self._semantic_callbacks):
            try:
                callback(message.namespace, message.key, message.text, message.vector)
            except Exception:  # a faulty callback must not deafen the others
                logger.exception("semantic cache entry callback failed")

    def _dispatch(self, invalidation: Invalidation) -> None:
        for callback in list(self._callbacks):
            try:
                callback(invalidation)
            except Exception:  # a faulty callback must not deafen the others
                logger.exception("cache invalidation callback failed")
