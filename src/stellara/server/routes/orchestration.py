"""The orchestration API: generate with routing control, generate with a guaranteed answer,
provider health and circuit breakers.

- `POST /ai-orchestration/generate`: a chat request plus optional
  `routing: {strategy, providers}` (replace the model's strategy; keep only these provider
  ids) and `cache: {no_cache, no_store, ttl_s}`; answers the `chat.completion` plus
  `orchestration: {provider, model, cached, attempts, latency_ms, cost_usd, route}`.
- `POST /ai-orchestration/generate-with-fallback`: the same, but always 200: when every route
  fails, a degraded answer (a stale cache entry, else `resilience.fallback_message`) with
  `degraded: true` and the failures.
- `GET /ai-orchestration/health`, `GET /ai-orchestration/healthy-providers`: any valid key.
- `GET /ai-orchestration/circuit-breakers`, `POST …/circuit-breakers/{id}/reset`: master key.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from stellara import _json
from stellara.cache.stage import CacheControl
from stellara.config.models import Strategy
from stellara.errors import NoHealthyProviderError, RouteNotFoundError, StellaraError, UpstreamError
from stellara.pipeline.context import RequestContext
from stellara.schema.chat import ChatCompletion, ChatRequest, Choice, ResponseMessage, Usage
from stellara.server.intake import json_response, open_model_call, response_headers
from stellara.server.spec import OBJECT, Access, Call, Reply, Route


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


_generate_decoder = msgspec.json.Decoder(GenerateRequest)


async def generate(call: Call) -> web.StreamResponse:
    return await _generate(call, degrade=False)


async def generate_with_fallback(call: Call) -> web.StreamResponse:
    return await _generate(call, degrade=True)


async def _generate(call: Call, *, degrade: bool) -> web.StreamResponse:
    ctx, body = await open_model_call(call, _generate_decoder)
    _apply_options(ctx, body)
    chat = body.chat()
    if chat.is_streaming:
        chat = msgspec.structs.replace(chat, stream=None, stream_options=None)
    try:
        completion = await call.runtime.gateway.complete(ctx, chat)
    except (UpstreamError, NoHealthyProviderError) as exc:
        if not degrade:
            raise
        return await _degraded(call, ctx, chat, exc)
    payload = _with_orchestration(completion, ctx, call.runtime.clock.monotonic())
    return web.Response(body=payload, headers=response_headers(call, is_json=True))


async def _degraded(
    call: Call, ctx: RequestContext, chat: ChatRequest, error: StellaraError
) -> web.Response:
    """Every route failed: a stale answer if the cache kept one, else the fallback text."""
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
    body = _json.loads(_with_orchestration(completion, ctx, runtime.clock.monotonic()))
    body["degraded"] = True
    body["orchestration"]["degraded_source"] = "stale_cache" if stale else "fallback_message"
    body["orchestration"]["failures"] = ctx.failures or [f"{error.code}: {error.message}"]
    return web.Response(body=_json.dumps(body), headers=response_headers(call, is_json=True))


def _apply_options(ctx: RequestContext, body: GenerateRequest) -> None:
    if body.routing is not None:
        ctx.routing_strategy = body.routing.strategy
        if body.routing.providers is not None:
            ctx.routing_providers = frozenset(body.routing.providers)
    if body.cache is not None:
        ctx.cache_control = CacheControl(body.cache.no_cache, body.cache.no_store, body.cache.ttl_s)


def _with_orchestration(completion: ChatCompletion, ctx: RequestContext, now: float) -> bytes:
    body: dict[str, Any] = _json.loads(_json.encode(completion))
    body["orchestration"] = {
        "provider": ctx.provider_id,
        "model": ctx.provider_model or ctx.public_model,
        "cached": ctx.cache_status != "miss",
        "attempts": ctx.attempts,
        "latency_ms": round((now - ctx.started_at) * 1000, 3),
        "cost_usd": ctx.cost_usd,
        "route": ctx.route,
    }
    return _json.dumps(body)


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


_GENERATE = "chat.completion + orchestration"
ROUTES = (
    Route(
        "POST",
        "/ai-orchestration/generate",
        generate,
        Access.MODEL,
        "Chat with routing control and a report",
        Reply(_GENERATE, OBJECT),
        body=GenerateRequest,
        example={"model": "my-model", "messages": [{"role": "user", "content": "Hello!"}]},
    ),
    Route(
        "POST",
        "/ai-orchestration/generate-with-fallback",
        generate_with_fallback,
        Access.MODEL,
        "Chat that always answers 200 (degraded: true when every route failed)",
        Reply(_GENERATE, OBJECT),
        body=GenerateRequest,
        example={"model": "my-model", "messages": [{"role": "user", "content": "Hello!"}]},
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
