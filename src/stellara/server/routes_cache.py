"""Cache management (DESIGN §3, §7): stats, clear, warm. Every route needs the master key.

`POST /ai-orchestration/cache/clear` body (optional): `{"user"?, "model"?}` — without either,
everything. `POST /ai-orchestration/cache/warm` body: `{"entries": [{"user", "model",
"messages", "response"}]}` where `response` is the answer text or a whole `chat.completion`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from aiohttp import web

from stellara import _json
from stellara._clock import Clock
from stellara.cache.stage import AnswerCache
from stellara.errors import InvalidRequestError, StellaraError
from stellara.pipeline.auth import Authenticator
from stellara.schema.chat import (
    ChatCompletion,
    ChatRequest,
    Choice,
    Message,
    ResponseMessage,
    Usage,
)
from stellara.server.errors import decode_body, error_response
from stellara.server.request import read_body, require_master
from stellara.telemetry.events import CACHE_CLEARED, Event, EventBus

_JSON = {"Content-Type": "application/json"}


class WarmEntry(msgspec.Struct):
    user: str
    model: str
    messages: list[Message]
    response: str | ChatCompletion


class WarmBody(msgspec.Struct):
    entries: list[WarmEntry]


class ClearBody(msgspec.Struct):
    user: str | None = None
    model: str | None = None


_warm_decoder = msgspec.json.Decoder(WarmBody)
_clear_decoder = msgspec.json.Decoder(ClearBody)


class CacheRoutes:
    """Bound to one app's answer cache (None: `cache:` not configured)."""

    def __init__(
        self,
        cache: AnswerCache | None,
        auth: Authenticator,
        clock: Clock,
        events: EventBus,
        *,
        max_body_bytes: int,
    ) -> None:
        self._cache = cache
        self._auth = auth
        self._clock = clock
        self._events = events
        self._max_body_bytes = max_body_bytes

    def register(self, app: web.Application) -> None:
        app.router.add_get("/ai-orchestration/cache/stats", self.stats)
        app.router.add_post("/ai-orchestration/cache/clear", self.clear)
        app.router.add_post("/ai-orchestration/cache/warm", self.warm)

    async def stats(self, request: web.Request) -> web.Response:
        try:
            await self._require_master(request)
        except StellaraError as exc:
            return error_response(exc)
        body: dict[str, Any] = {"enabled": self._cache is not None}
        if self._cache is not None:
            body.update(self._cache.stats())
        return web.Response(body=_json.dumps(body), headers=_JSON)

    async def clear(self, request: web.Request) -> web.Response:
        try:
            await self._require_master(request)
            raw = await read_body(request, self._max_body_bytes)
            what = decode_body(_clear_decoder, raw) if raw.strip() else ClearBody()
            cache = self._enabled()
            scope = None if what.user is None else cache.scope_of_user(what.user)
            removed = await cache.clear(scope=scope, model=what.model)
            facts = {"scope": scope, "model": what.model, "removed": removed}
            self._events.publish(Event(CACHE_CLEARED, facts))
        except StellaraError as exc:
            return error_response(exc)
        return web.Response(body=_json.dumps({"cleared": removed}), headers=_JSON)

    async def warm(self, request: web.Request) -> web.Response:
        try:
            await self._require_master(request)
            body = decode_body(_warm_decoder, await read_body(request, self._max_body_bytes))
            cache = self._enabled()
            for entry in body.entries:
                chat = ChatRequest(model=entry.model, messages=entry.messages)
                await cache.warm(entry.user, chat, self._completion(entry))
        except StellaraError as exc:
            return error_response(exc)
        return web.Response(body=_json.dumps({"warmed": len(body.entries)}), headers=_JSON)

    def _completion(self, entry: WarmEntry) -> ChatCompletion:
        if isinstance(entry.response, ChatCompletion):
            return entry.response
        digest = hashlib.blake2b(entry.response.encode(), digest_size=8).hexdigest()
        return ChatCompletion(
            id=f"chatcmpl-warm-{digest}",
            object="chat.completion",
            created=int(self._clock.time()),
            model=entry.model,
            choices=[Choice(0, ResponseMessage("assistant", entry.response), "stop")],
            usage=Usage(),
        )

    def _enabled(self) -> AnswerCache:
        if self._cache is None:
            raise InvalidRequestError("The cache is not configured (no `cache:` section).")
        return self._cache

    async def _require_master(self, request: web.Request) -> None:
        await require_master(self._auth, request, "Cache management needs the master key.")
