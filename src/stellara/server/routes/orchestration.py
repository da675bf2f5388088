"""The orchestration API: generate with routing control, generate with a guaranteed answer,
provider health and circuit breakers.

- `POST /ai-orchestration/generate` takes either of two bodies, told apart by their fields:
  a chat request plus optional `routing: {strategy, providers}` (replace the model's
  strategy; keep only these provider ids) and `cache: {no_cache, no_store, ttl_s}`; or a
  prompt body, `{prompt, userId, model, provider?, options?}` (`inbound.orchestration`), whose
  `provider` keeps only that provider id. A body with `messages` and `prompt` (or `userId`)
  is refused. It answers the `chat.completion` plus
  `orchestration: {provider, model, cached, attempts, latency_ms, cost_usd, route}`, whichever
  the body. With `stream: true` (`options.stream` in a prompt body) it answers OpenAI's chunk
  stream, as `/v1/chat/completions` does, with one more chunk before `data: [DONE]`:
  `choices: []` and the `orchestration` object (`OrchestrationFrames`).
- `POST /ai-orchestration/generate-with-fallback`: the same, but always 200: when every route
  fails before an answer started, a degraded answer (a stale cache entry, else
  `resilience.fallback_message`) with `degraded: true` and the failures; streamed, it is
  replayed as a stream whose last chunk carries them. A stream broken after it started ends
  with the error event, as on `/v1/chat/completions`.
- `GET /ai-orchestration/health`, `GET /ai-orchestration/healthy-providers`: any valid key.
- `GET /ai-orchestration/circuit-breakers`, `POST …/circuit-breakers/{id}/reset`: master key.

A prompt body's `userId` must be the key's user (403 otherwise): a key never spends another
user's limits. The master key, where it may call models (`server.master_key_model_calls`),
makes requests for any `userId`, charged to that user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import msgspec
from aiohttp import web

from stellara import _json
from stellara.cache.replay import replay_chunks
from stellara.cache.stage import CacheControl
from stellara.config.models import Strategy
from stellara.errors import (
    NoHealthyProviderError,
    PermissionDeniedError,
    RouteNotFoundError,
    StellaraError,
    UpstreamError,
)
from stellara.inbound.bounds import check_bounds
from stellara.inbound.orchestration import PARAM_NAMES as PROMPT_PARAM_NAMES
from stellara.inbound.orchestration import (
    PromptRequest,
    decode_prompt_request,
    is_prompt_body,
    to_chat_request,
)
from stellara.pipeline.context import RequestContext
from stellara.schema.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    ResponseMessage,
    Usage,
    request_decoder,
)
from stellara.server.intake import decode_body, json_response, new_context, read_body
from stellara.server.schemas import ErrorBody
from stellara.server.spec import OBJECT, Access, Call, Reply, Route
from stellara.server.sse import OpenAIFrames, relay, send_answer


class RoutingOptions(msgspec.Struct, forbid_unknown_fields=True):
    strategy: Strategy | None = None
    providers: list[str] | None = None


class CacheOptions(msgspec.Struct, forbid_unknown_fields=True):
    no_cache: bool = False
    no_store: bool = False
    ttl_s: float | None = None


class GenerateRequest(ChatRequest, omit_defaults=True):
    """A chat request with the gateway-only fields, which never go upstream."""

    routing: RoutingOptions | None = None
    cache: CacheOptions | None = None

    def chat(self) -> ChatRequest:
        return ChatRequest(**{f: getattr(self, f) for f in ChatRequest.__struct_fields__})


_chat_decoder = msgspec.json.Decoder(GenerateRequest)
_GATEWAY_FIELDS = frozenset(GenerateRequest.__struct_fields__) - frozenset(
    ChatRequest.__struct_fields__
)


class _BodyDecoder:
    """The route's two bodies, told apart by their fields (`is_prompt_body`). A chat body's
    undeclared top-level fields are kept in `unknown_params`, as on `/v1/chat/completions`,
    so the parameter policy relays or refuses them rather than lose them."""

    def decode(self, body: bytes, /) -> GenerateRequest | PromptRequest:
        if is_prompt_body(body):
            return decode_prompt_request(body)
        generate = _chat_decoder.decode(body)
        unknown = request_decoder.decode(body).unknown_params
        if unknown is None:
            return generate
        kept = {name: raw for name, raw in unknown.items() if name not in _GATEWAY_FIELDS}
        return msgspec.structs.replace(generate, unknown_params=kept or None)


_body_decoder = _BodyDecoder()


class OrchestrationFrames(OpenAIFrames):
    """OpenAI's chunk stream with one more event before `data: [DONE]`: a chunk with
    `choices: []` and the fields `tail()` gives (`orchestration`; `degraded` too for a degraded
    answer), made once the answer is complete, so its report holds the whole answer's cost and
    latency. A stream broken after it started ends with the error event instead."""

    def __init__(self, tail: Callable[[], dict[str, Any]], *, include_usage: bool) -> None:
        super().__init__(include_usage=include_usage)
        self._tail = tail
        self._last: ChatCompletionChunk | None = None

    def feed(self, chunk: ChatCompletionChunk) -> bytes:
        self._last = chunk
        return super().feed(chunk)

    async def finish(self) -> bytes:
        last = self._last
        head = {} if last is None else {"id": last.id, "created": last.created, "model": last.model}
        event = {**head, "object": "chat.completion.chunk", "choices": [], **self._tail()}
        return b"data: " + _json.dumps(event) + b"\n\n" + await super().finish()


async def generate(call: Call) -> web.StreamResponse:
    return await _generate(call, degrade=False)


async def generate_with_fallback(call: Call) -> web.StreamResponse:
    return await _generate(call, degrade=True)


async def _generate(call: Call, *, degrade: bool) -> web.StreamResponse:
    ctx, chat = await _open(call)
    gateway = call.runtime.gateway
    clock = call.runtime.clock
    try:
        if chat.is_streaming:
            stream = await gateway.open_stream(ctx, chat)
        else:
            completion = await gateway.complete(ctx, chat)
    except (UpstreamError, NoHealthyProviderError) as exc:
        if not degrade:
            raise
        return await _degraded(call, ctx, chat, exc)
    if chat.is_streaming:
        frames = OrchestrationFrames(
            lambda: {"orchestration": _report(ctx, clock.monotonic())},
            include_usage=chat.wants_stream_usage,
        )
        return await relay(call, stream, frames)
    body: dict[str, Any] = _json.loads(_json.encode(completion))
    body["orchestration"] = _report(ctx, clock.monotonic())
    return json_response(call, body)


async def _open(call: Call) -> tuple[RequestContext, ChatRequest]:
    """`open_model_call` for the route's two bodies: the context, with the body's routing and
    cache options applied (and, for a prompt body, the user it is made for), and the canonical
    request."""
    ctx = call.context = new_context(call)
    call.runtime.gateway.admit_early(ctx)
    body = decode_body(_body_decoder, await read_body(call))
    if isinstance(body, PromptRequest):
        _make_for(call, ctx, body.user_id)
        ctx.param_names = PROMPT_PARAM_NAMES
        if body.provider is not None:
            ctx.routing_providers = frozenset((body.provider,))
        chat = to_chat_request(body)
    else:
        _apply_options(ctx, body)
        chat = body.chat()
    check_bounds(chat)
    return ctx, chat


def _make_for(call: Call, ctx: RequestContext, user_id: str) -> None:
    """A prompt body's `userId` is the key's own user. Only the master key (which reaches a
    model route only with `server.master_key_model_calls`) makes requests for any user: they
    are then that user's, under that user's limits and in that user's records, and early
    admission is run again for that user in place of the master key's."""
    principal = ctx.principal
    if user_id == principal.user:
        return
    if not principal.is_master:
        raise PermissionDeniedError(
            f"userId {user_id!r} is not this key's user: a key makes requests for its own "
            "user only (leave userId as the key's user, or use that user's key).",
            param="userId",
            code="user_not_allowed",
        )
    ctx.release()
    ctx.slot = None
    ctx.principal = replace(principal, user=user_id)
    call.runtime.gateway.admit_early(ctx)


async def _degraded(
    call: Call, ctx: RequestContext, chat: ChatRequest, error: StellaraError
) -> web.StreamResponse:
    """Every route failed: a stale answer if the cache kept one, else the fallback text; as
    a stream (replayed as a cache hit is) when one was asked for."""
    runtime = call.runtime
    stale: ChatCompletion | None = None
    cache = runtime.cache
    if cache is not None:
        plan = cache.plan(ctx.principal, chat, CacheControl())
        stale = await cache.stale(plan) if plan is not None else None
    completion = stale or ChatCompletion(
        id=f"chatcmpl-degraded-{ctx.request_id}",
        object="chat.completion",
        created=int(runtime.clock.time()),
        model=chat.model,
        choices=[
            Choice(
                0, ResponseMessage("assistant", runtime.config.resilience.fallback_message), "stop"
            )
        ],
        usage=Usage(),
    )
    report = _report(ctx, runtime.clock.monotonic())
    report["degraded_source"] = "stale_cache" if stale else "fallback_message"
    report["failures"] = ctx.failures or [f"{error.code}: {error.message}"]
    tail = {"degraded": True, "orchestration": report}
    if chat.is_streaming:
        include_usage = chat.wants_stream_usage
        chunks = replay_chunks(completion, include_usage=include_usage)
        frames = OrchestrationFrames(lambda: tail, include_usage=include_usage)
        return await send_answer(call, chunks, frames)
    return json_response(call, {**_json.loads(_json.encode(completion)), **tail})


def _apply_options(ctx: RequestContext, body: GenerateRequest) -> None:
    if body.routing is not None:
        ctx.routing_strategy = body.routing.strategy
        if body.routing.providers is not None:
            ctx.routing_providers = frozenset(body.routing.providers)
    if body.cache is not None:
        ctx.cache_control = CacheControl(body.cache.no_cache, body.cache.no_store, body.cache.ttl_s)


def _report(ctx: RequestContext, now: float) -> dict[str, Any]:
    """The answer's `orchestration` object: who answered, how, at what cost."""
    return {
        "provider": ctx.provider_id,
        "model": ctx.provider_model or ctx.public_model,
        "cached": ctx.cache_status != "miss",
        "attempts": ctx.attempts,
        "latency_ms": round((now - ctx.started_at) * 1000, 3),
        "cost_usd": ctx.cost_usd,
        "route": ctx.route,
    }


async def health(call: Call) -> web.StreamResponse:
    return json_response(call, {"providers": call.runtime.attempts.health.report()})


async def healthy_providers(call: Call) -> web.StreamResponse:
    return json_response(call, {"providers": call.runtime.attempts.health.healthy_providers()})


async def circuit_breakers(call: Call) -> web.StreamResponse:
    return json_response(call, {"breakers": call.runtime.attempts.breakers.snapshot()})


async def reset_breaker(call: Call) -> web.StreamResponse:
    breaker_id = call.request.match_info["breaker_id"]
    if not call.runtime.attempts.breakers.reset(breaker_id):
        raise RouteNotFoundError(f"No circuit breaker {breaker_id!r}.")
    return json_response(call, {"reset": breaker_id, "state": "closed"})


_GENERATE = Reply(
    "A chat.completion with an `orchestration` object; with `stream: true` (or a prompt body's "
    "`options.stream`) an SSE stream of chat.completion.chunk events whose last one before "
    "`data: [DONE]` has `choices: []` and the `orchestration` object, or that ends with an "
    "error event when the provider breaks off. The `text/event-stream` schema is each event's "
    "`data`",
    OBJECT,
    stream=(ChatCompletionChunk, ErrorBody),
)
_BODIES = (GenerateRequest, PromptRequest)
_ERRORS = {
    403: "The key may not use this model, or a prompt body's userId is not the key's user",
}
ROUTES = (
    Route(
        "POST",
        "/ai-orchestration/generate",
        generate,
        Access.MODEL,
        "Chat (a chat request or a prompt body) with routing control and a report",
        _GENERATE,
        body=_BODIES,
        example={"model": "my-model", "messages": [{"role": "user", "content": "Hello!"}]},
        errors=_ERRORS,
    ),
    Route(
        "POST",
        "/ai-orchestration/generate-with-fallback",
        generate_with_fallback,
        Access.MODEL,
        "Chat that always answers 200 (degraded: true when every route failed)",
        _GENERATE,
        body=_BODIES,
        example={"model": "my-model", "messages": [{"role": "user", "content": "Hello!"}]},
        errors=_ERRORS,
    ),
    Route(
        "GET",
        "/ai-orchestration/health",
        health,
        Access.KEYED,
        "Per-provider health",
        Reply("Per-provider health", OBJECT),
    ),
    Route(
        "GET",
        "/ai-orchestration/healthy-providers",
        healthy_providers,
        Access.KEYED,
        "Providers usable now",
        Reply("Providers usable now", OBJECT),
    ),
    Route(
        "GET",
        "/ai-orchestration/circuit-breakers",
        circuit_breakers,
        Access.MASTER,
        "Circuit breakers (master key)",
        Reply("Circuit breakers", OBJECT),
    ),
    Route(
        "POST",
        "/ai-orchestration/circuit-breakers/{breaker_id:.+}/reset",
        reset_breaker,
        Access.MASTER,
        "Close one circuit breaker (master key)",
        Reply("Reset", OBJECT),
        errors={404: "No such breaker"},
    ),
)
