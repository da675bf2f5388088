"""Cache management: stats, clear, warm. Every route needs the master key.

`POST /ai-orchestration/cache/clear` body (optional): `{"user"?, "model"?}` — without either,
everything. `POST /ai-orchestration/cache/warm` body: `{"entries": [{"user", "model",
"messages", "response"}]}` where `response` is the answer text or a whole `chat.completion`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from aiohttp import web

from stellara.cache.stage import AnswerCache
from stellara.errors import InvalidRequestError
from stellara.events import CacheCleared
from stellara.schema.chat import (
    ChatCompletion,
    ChatRequest,
    Choice,
    Message,
    ResponseMessage,
    Usage,
)
from stellara.server.intake import decode_body, json_response, read_body
from stellara.server.spec import OBJECT, Access, Call, Reply, Route


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


async def stats(call: Call) -> web.StreamResponse:
    cache = call.runtime.cache
    body: dict[str, Any] = {"enabled": cache is not None}
    if cache is not None:
        body.update(cache.stats())
    return json_response(call, body)


async def clear(call: Call) -> web.StreamResponse:
    raw = await read_body(call)
    what = decode_body(_clear_decoder, raw) if raw.strip() else ClearBody()
    cache = _enabled(call)
    scope = None if what.user is None else cache.scope_of_user(what.user)
    removed = await cache.clear(scope=scope, model=what.model)
    call.runtime.events.publish(CacheCleared(scope=scope, model=what.model, removed=removed))
    return json_response(call, {"cleared": removed})


async def warm(call: Call) -> web.StreamResponse:
    body = decode_body(_warm_decoder, await read_body(call))
    cache = _enabled(call)
    now = call.runtime.clock.time()
    for entry in body.entries:
        chat = ChatRequest(model=entry.model, messages=entry.messages)
        await cache.warm(entry.user, chat, _completion(entry, now))
    return json_response(call, {"warmed": len(body.entries)})


def _completion(entry: WarmEntry, now: float) -> ChatCompletion:
    if isinstance(entry.response, ChatCompletion):
        return entry.response
    digest = hashlib.blake2b(entry.response.encode(), digest_size=8).hexdigest()
    return ChatCompletion(
        id=f"chatcmpl-warm-{digest}",
        object="chat.completion",
        created=int(now),
        model=entry.model,
        choices=[Choice(0, ResponseMessage("assistant", entry.response), "stop")],
        usage=Usage(),
    )


def _enabled(call: Call) -> AnswerCache:
    cache = call.runtime.cache
    if cache is None:
        raise InvalidRequestError("The cache is not configured (no `cache:` section).")
    return cache


ROUTES = (
    Route(
        "GET",
        "/ai-orchestration/cache/stats",
        stats,
        Access.MASTER,
        "Entries, bytes, hits, misses, hit rate per cache level",
        Reply("Done", OBJECT),
    ),
    Route(
        "POST",
        "/ai-orchestration/cache/clear",
        clear,
        Access.MASTER,
        "Clear everything, or one user's and/or one model's entries",
        Reply("Done", OBJECT),
        body=ClearBody,
        body_required=False,
    ),
    Route(
        "POST",
        "/ai-orchestration/cache/warm",
        warm,
        Access.MASTER,
        "Store answers so the same requests afterwards are hits",
        Reply("Done", OBJECT),
        body=WarmBody,
    ),
)
