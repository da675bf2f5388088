"""The orchestration API (DESIGN §3, §7): generate with routing control, generate with a
guaranteed answer, provider health and circuit breakers.

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

import logging
from typing import Any

import msgspec
from aiohttp import web

from stellara import _json
from stellara.cache.stage import CacheControl
from stellara.config.models import Strategy
from stellara.errors import (
    NoHealthyProviderError,
    RouteNotFoundError,
    StellaraError,
    UpstreamError,
)
from stellara.pipeline.attempts import AttemptRunner
from stellara.pipeline.auth import Authenticator
from stellara.pipeline.context import RequestContext
from stellara.pipeline.gateway import Gateway
from stellara.schema.chat import (
    ChatCompletion,
    ChatRequest,
    Choice,
    ResponseMessage,
    Usage,
)
from stellara.server.errors import error_response
from stellara.server.request import (
    ModelCallIntake,
    bearer_token,
    new_request_id,
    require_master,
    response_headers,
    unexpected_error,
)

logger = logging.getLogger(__name__)
_JSON = {"Content-Type": "application/json"}


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


class OrchestrationRoutes:
    """Bound to one app's gateway and its attempt runner."""

    def __init__(
        self,
        gateway: Gateway,
        auth: Authenticator,
        *,
        max_body_bytes: int,
        timeout_s: float,
        fallback_message: str,
    ) -> None:
        self._gateway = gateway
        self._attempts: AttemptRunner = gateway.attempts
        self._auth = auth
        self._intake = ModelCallIntake(auth, gateway.clock, max_body_bytes, timeout_s)
        self._fallback_message = fallback_message

    def register(self, app: web.Application) -> None:
        app.router.add_post("/ai-orchestration/generate", self.generate)
        app.router.add_post("/ai-orchestration/generate-with-fallback", self.generate_with_fallback)
        app.router.add_get("/ai-orchestration/health", self.health)
        app.router.add_get("/ai-orchestration/healthy-providers", self.healthy_providers)
        app.router.add_get("/ai-orchestration/circuit-breakers", self.circuit_breakers)
        app.router.add_post(
            "/ai-orchestration/circuit-breakers/{breaker_id:.+}/reset", self.reset_breaker
        )

    async def generate(self, request: web.Request) -> web.Response:
        return await self._generate(request, degrade=False)

    async def generate_with_fallback(self, request: web.Request) -> web.Response:
        return await self._generate(request, degrade=True)

    async def _generate(self, request: web.Request, *, degrade: bool) -> web.Response:
        request_id = new_request_id()
        ctx: RequestContext | None = None
        try:
            ctx, body = await self._intake.begin(request, request_id, _generate_decoder)
            _apply_options(ctx, body)
            chat = body.chat()
            if chat.is_streaming:
                chat = msgspec.structs.replace(chat, stream=None, stream_options=None)
            try:
                completion = await self._gateway.complete(ctx, chat)
            except (UpstreamError, NoHealthyProviderError) as exc:
                if not degrade:
                    raise
                return await self._degraded(ctx, chat, exc)
        except StellaraError as exc:
            return error_response(exc, response_headers(request_id, ctx))
        except Exception:  # noqa: BLE001 - the HTTP boundary, logged by unexpected_error
            error = unexpected_error(self._gateway, request_id, ctx)
            return error_response(error, response_headers(request_id, ctx))
        payload = _with_orchestration(completion, ctx, self._gateway.clock.monotonic())
        return web.Response(body=payload, headers=response_headers(request_id, ctx, True))

    async def _degraded(
        self, ctx: RequestContext, chat: ChatRequest, error: StellaraError
    ) -> web.Response:
        """Every route failed: a stale answer if the cache kept one, else the fallback text."""
        stale: ChatCompletion | None = None
        cache = self._gateway.cache
        if cache is not None:
            plan = cache.plan(ctx.principal, chat, CacheControl())
            stale = await cache.stale(plan) if plan is not None else None
        completion = stale or ChatCompletion(
            id=f"chatcmpl-degraded-{ctx.request_id}",
            object="chat.completion",
            created=int(self._gateway.clock.time()),
            model=chat.model,
            choices=[Choice(0, ResponseMessage("assistant", self._fallback_message), "stop")],
            usage=Usage(),
        )
        body = _json.loads(_with_orchestration(completion, ctx, self._gateway.clock.monotonic()))
        body["degraded"] = True
        body["orchestration"]["degraded_source"] = "stale_cache" if stale else "fallback_message"
        body["orchestration"]["failures"] = ctx.failures or [f"{error.code}: {error.message}"]
        return web.Response(
            body=_json.dumps(body), headers=response_headers(ctx.request_id, ctx, True)
        )

    async def health(self, request: web.Request) -> web.Response:
        try:
            await self._auth.authenticate(bearer_token(request))
        except StellaraError as exc:
            return error_response(exc)
        return _json_response({"providers": self._attempts.health.report()})

    async def healthy_providers(self, request: web.Request) -> web.Response:
        try:
            await self._auth.authenticate(bearer_token(request))
        except StellaraError as exc:
            return error_response(exc)
        return _json_response({"providers": self._attempts.health.healthy_providers()})

    async def circuit_breakers(self, request: web.Request) -> web.Response:
        try:
            await self._require_master(request)
        except StellaraError as exc:
            return error_response(exc)
        return _json_response({"breakers": self._attempts.breakers.snapshot()})

    async def reset_breaker(self, request: web.Request) -> web.Response:
        breaker_id = request.match_info["breaker_id"]
        try:
            await self._require_master(request)
            if not self._attempts.breakers.reset(breaker_id):
                raise RouteNotFoundError(f"No circuit breaker {breaker_id!r}.")
        except StellaraError as exc:
            return error_response(exc)
        return _json_response({"reset": breaker_id, "state": "closed"})

    async def _require_master(self, request: web.Request) -> None:
        await require_master(self._auth, request, "This route needs the master key.")


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


def _json_response(body: dict[str, Any]) -> web.Response:
    return web.Response(body=_json.dumps(body), headers=_JSON)
