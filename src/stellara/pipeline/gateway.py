"""The gateway's request path, independent of HTTP: route, attempt, account.

`Gateway.complete` answers a non-streaming request; `Gateway.open_stream` starts a streaming
one and returns once the provider's first chunk is in hand, so a provider that fails before
answering still yields a proper HTTP error status instead of a broken stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Iterator
from dataclasses import replace
from typing import Any, TypeVar

from stellara import _json
from stellara._clock import Clock
from stellara.cache.assemble import StreamAssembler
from stellara.cache.replay import replay_stream
from stellara.cache.stage import AnswerCache, CachePlan
from stellara.catalog import Catalog
from stellara.errors import (
    ClientDisconnectedError,
    InvalidRequestError,
    StellaraError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from stellara.limits import Estimator, Limiter, PriceKey
from stellara.pipeline.attempts import AttemptRunner, Call
from stellara.pipeline.context import RequestContext
from stellara.providers.base import EmbeddingsAdapter
from stellara.routing.models import ModelTable, PublicModel, Target
from stellara.schema.chat import ChatCompletion, ChatCompletionChunk, ChatRequest, Usage
from stellara.schema.embeddings import EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage
from stellara.telemetry.events import REQUEST_COMPLETED, REQUEST_FAILED, Event, EventBus
from stellara.tokens import TokenCounter

T = TypeVar("T")


class Gateway:
    """Runs requests through the pipeline stages. Built once per app by `create_app`."""

    def __init__(
        self,
        models: ModelTable,
        events: EventBus,
        clock: Clock,
        catalog: Catalog,
        tokens: TokenCounter,
        *,
        attempts: AttemptRunner,
        limiter: Limiter | None = None,
        cache: AnswerCache | None = None,
        log_content: bool = False,
    ) -> None:
        """`limiter` None (no tier configured) leaves the state backend out of the request
        path altogether. `log_content` puts prompt and answer text into the request events
        (for usage records); off by default, as they may hold personal data."""
        self.models = models
        self.events = events
        self.clock = clock
        self.catalog = catalog
        self.tokens = tokens
        self.limiter = limiter
        self.cache = cache
        self.attempts = attempts
        self.log_content = log_content
        self.in_flight = 0  # requests between model resolution and their recorded end
        self._background: set[asyncio.Task[None]] = set()
        self.estimator = Estimator(
            tokens,
            catalog,
            default_reserve=limiter.policy.default_max_tokens_reserve if limiter else 0,
        )

    def _resolve(self, ctx: RequestContext, name: str) -> PublicModel:
        """The public model, once per request: 404 or 403 before anything else is spent."""
        public = self.models.resolve(ctx.principal, name)
        ctx.public_model = public.name
        self.in_flight += 1
        return public

    async def _admit(
        self, ctx: RequestContext, public: PublicModel, request: ChatRequest | EmbeddingsRequest
    ) -> None:
        """The limits stage: reserve the request's estimate, or raise the refusal (429).

        Runs after the model name is known to be valid and allowed (a 404 or 403 costs the
        caller nothing) and before any provider is chosen, so the estimate is priced at the
        model's first target (see `limits.estimate`).
        """
        limiter = self.limiter
        if limiter is None:
            return
        principal = ctx.principal
        policy = limiter.resolve(
            principal.user,
            principal.tier,
            ctx.session_id,
            key_id=principal.key_id,
            key_limits=principal.limits,
        )
        if policy is None:
            return
        targets = public.targets
        if isinstance(request, EmbeddingsRequest):
            targets = tuple(t for t in targets if isinstance(t.adapter, EmbeddingsAdapter))
            first = targets[0] if targets else None
        else:
            first = targets[0]
        # No embeddings target: the route refuses it next, so only the request is counted.
        price = PriceKey(first.provider_type, first.model) if first else PriceKey("", "")
        needs_tokens = policy.needs_estimate and first is not None
        if isinstance(request, EmbeddingsRequest):
            amounts = self.estimator.embeddings(request, price, needs_tokens=needs_tokens)
        else:
            amounts = self.estimator.chat(request, price, needs_tokens=needs_tokens)
        ticket = await limiter.admit(policy, amounts, ctx.request_id)
        ctx.ticket = ticket
        ticket.raise_if_refused()

    def settle(self, ctx: RequestContext) -> None:
        """Settle the request's limits to what it used (zero tokens when it failed before any
        usage was known; the request itself always counts).

        In the background: the answer need not wait a state round trip for it. `drain` waits
        for the pending ones on shutdown, so none is lost.
        """
        ticket = ctx.ticket
        if ticket is None or ctx.is_settled:  # once, whichever end path comes first
            return
        ctx.is_settled = True
        self._in_background(ticket.settle(ctx.usage, ctx.cost_usd))

    def store_later(self, plan: CachePlan, completion: ChatCompletion) -> None:
        """Cache an answer after it was sent (the L2 write need not delay it)."""
        if self.cache is not None:
            self._in_background(self.cache.store(plan, completion))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for every pending settle and cache store (clean shutdown)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _cache_plan(self, ctx: RequestContext, request: ChatRequest) -> CachePlan | None:
        if self.cache is None:
            return None
        return self.cache.plan(ctx.principal, request, ctx.cache_control)

    async def _cache_hit(
        self, ctx: RequestContext, plan: CachePlan | None
    ) -> ChatCompletion | None:
        """A cached answer, accounted as a request that cost no tokens (it still counts
        against request rate limits, which admitted it)."""
        if plan is None or self.cache is None:
            return None
        hit = await self.cache.lookup(plan)
        if hit is None:
            return None
        ctx.cache_status = hit.kind
        ctx.provider_id = "cache"
        ctx.first_byte_at = self.clock.monotonic()
        self.publish_completed(ctx, hit.completion)
        return hit.completion

    def _candidates(
        self, public: PublicModel, *, for_embeddings: bool = False
    ) -> list[PublicModel]:
        """The public model and its fallbacks, as the attempt loop will try them."""
        chain = self.attempts.chain(public)
        if not for_embeddings:
            return chain
        serving = [
            replace(
                m, targets=tuple(t for t in m.targets if isinstance(t.adapter, EmbeddingsAdapter))
            )
            for m in chain
        ]
        if not serving[0].targets:
            raise InvalidRequestError(
                f"The model {public.name!r} has no provider that serves embeddings.",
                param="model",
            )
        return [m for m in serving if m.targets]

    async def _run(
        self, ctx: RequestContext, models: list[PublicModel], call: Call[T], *, stream: bool
    ) -> T:
        answer = await self.attempts.run(
            ctx,
            models,
            call,
            stream=stream,
            strategy=ctx.routing_strategy,
            providers=ctx.routing_providers,
        )
        ctx.first_byte_at = self.clock.monotonic()
        return answer

    async def complete(self, ctx: RequestContext, request: ChatRequest) -> ChatCompletion:
        """Answer a non-streaming request or raise a `StellaraError`."""
        public = self._resolve(ctx, request.model)
        self._keep_prompt(ctx, request.messages)
        with self._ending(ctx):
            await self._admit(ctx, public, request)
            plan = self._cache_plan(ctx, request)
            hit = await self._cache_hit(ctx, plan)
            if hit is not None:
                return hit
            models = self._candidates(public)

            async def call(target: Target, timeout_s: float) -> ChatCompletion:
                return await target.adapter.chat(request, target.model, timeout_s=timeout_s)

            completion = await self._run(ctx, models, call, stream=False)
            ctx.usage = completion.usage
            self.publish_completed(ctx, completion)
            if plan is not None:
                self.store_later(plan, completion)
            return completion

    @contextlib.contextmanager
    def _ending(self, ctx: RequestContext) -> Iterator[None]:
        """Around a whole non-streaming call: however it ends, it is recorded once (a
        cancellation as the client leaving) and its limits are settled."""
        try:
            yield
        except StellaraError as exc:
            self.publish_failure(ctx, exc)
            raise
        except asyncio.CancelledError:
            self.publish_failure(ctx, _client_left())
            raise
        finally:
            self.settle(ctx)

    async def open_stream(self, ctx: RequestContext, request: ChatRequest) -> ChunkStream:
        """Start a streaming request; raises before any byte is sent if the provider fails.

        The returned stream settles the request's limits when it ends, however it ends."""
        ctx.is_streaming = True
        public = self._resolve(ctx, request.model)
        self._keep_prompt(ctx, request.messages)
        try:
            await self._admit(ctx, public, request)
            plan = self._cache_plan(ctx, request)
            hit = await self._cache_hit(ctx, plan)
            if hit is not None:
                replay = replay_stream(hit, include_usage=True)
                first = await anext(replay)
                return ChunkStream(
                    self, ctx, first, replay, forward_usage=request.wants_stream_usage
                )
            return await self._start_stream(ctx, request, public, plan)
        except StellaraError as exc:
            self.publish_failure(ctx, exc)
            self.settle(ctx)
            raise
        except BaseException:
            self.publish_failure(ctx, _client_left())
            self.settle(ctx)
            raise

    async def _start_stream(
        self,
        ctx: RequestContext,
        request: ChatRequest,
        public: PublicModel,
        plan: CachePlan | None,
    ) -> ChunkStream:
        """The first target that delivers a first chunk wins; failures before it fail over
        silently, since the client has seen nothing yet."""
        models = self._candidates(public)

        async def start(
            target: Target, timeout_s: float
        ) -> tuple[ChatCompletionChunk, AsyncGenerator[ChatCompletionChunk, None]]:
            return await _first_chunk(target, request, timeout_s)

        first, upstream = await self._run(ctx, models, start, stream=True)
        return ChunkStream(
            self,
            ctx,
            first,
            upstream,
            forward_usage=request.wants_stream_usage,
            cache_plan=plan,
            assemble=self.log_content,
        )

    async def embed(self, ctx: RequestContext, request: EmbeddingsRequest) -> EmbeddingsResponse:
        """Embed the request's inputs with the first target that serves embeddings."""
        public = self._resolve(ctx, request.model)
        if self.log_content:
            ctx.prompt_text = _json.encode(request.texts()).decode()
        with self._ending(ctx):
            await self._admit(ctx, public, request)
            return await self._embed(ctx, request, public)

    async def _embed(
        self, ctx: RequestContext, request: EmbeddingsRequest, public: PublicModel
    ) -> EmbeddingsResponse:
        models = self._candidates(public, for_embeddings=True)

        async def call(target: Target, timeout_s: float) -> EmbeddingsResponse:
            adapter = target.adapter
            assert isinstance(adapter, EmbeddingsAdapter)  # _candidates kept only those
            return await adapter.embed(request, target.model, timeout_s=timeout_s)

        response = await self._run(ctx, models, call, stream=False)
        prompt_tokens = response.usage.prompt_tokens
        texts = request.texts()
        if prompt_tokens == 0 and texts:  # the provider reports no usage (Gemini): estimate it
            prompt_tokens = sum(self.tokens.count_text(t, ctx.provider_model) for t in texts)
            response.usage = EmbeddingsUsage(prompt_tokens, prompt_tokens)
        ctx.usage = Usage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens)
        self.publish_completed(ctx)
        return response

    def _keep_prompt(self, ctx: RequestContext, messages: object) -> None:
        if self.log_content:
            ctx.prompt_text = _json.encode(messages).decode()

    def publish_completed(
        self, ctx: RequestContext, completion: ChatCompletion | None = None
    ) -> None:
        """Record that `ctx` was answered in full (once per request, like `publish_failure`).
        `completion` is the answer, for `log_content`."""
        if ctx.is_recorded:
            return
        ctx.is_recorded = True
        self.in_flight -= 1
        ctx.cost_usd = self._cost_usd(ctx)
        if self.events.has_subscribers(REQUEST_COMPLETED):
            if self.log_content and completion is not None:
                ctx.completion_text = _answer_text(completion)
            self.events.publish(Event(REQUEST_COMPLETED, self._facts(ctx, 200)))

    def publish_failure(self, ctx: RequestContext, error: StellaraError) -> None:
        """Record that `ctx` ended in `error`, unless its end was recorded already (the HTTP
        layer calls it for its own failures)."""
        if ctx.is_recorded:
            return
        ctx.is_recorded = True
        self.in_flight -= 1
        # A stream cut after its usage chunk still consumed (and cost) tokens.
        ctx.cost_usd = self._cost_usd(ctx)
        if self.events.has_subscribers(REQUEST_FAILED):
            facts = self._facts(ctx, error.status_code)
            facts.update(error=error.code or error.error_type, message=error.message)
            self.events.publish(Event(REQUEST_FAILED, facts))

    def _cost_usd(self, ctx: RequestContext) -> float:
        if not ctx.provider_type:
            return 0.0  # failed before a target was chosen
        return self.catalog.cost_usd(ctx.provider_type, ctx.provider_model, ctx.usage)

    def _facts(self, ctx: RequestContext, status: int) -> dict[str, Any]:
        """What usage records, metrics and webhooks know of a finished request."""
        usage = ctx.usage
        details = usage.prompt_tokens_details if usage else None
        principal = ctx.principal
        first_byte_at = ctx.first_byte_at
        facts: dict[str, Any] = {
            "request_id": ctx.request_id,
            "started_at": ctx.started_epoch_s,
            "user": principal.user,
            "team": principal.team,
            "key_id": principal.key_id,
            "key_prefix": principal.key_prefix,
            "tier": ctx.ticket.policy.tier if ctx.ticket is not None else principal.tier,
            "session_id": ctx.session_id,
            "model": ctx.public_model,
            "provider": ctx.provider_id,
            "provider_model": ctx.provider_model,
            "attempts": ctx.attempts,
            "retries": ctx.retries,
            "fallbacks": ctx.fallbacks,
            "cache": ctx.cache_status,
            "stream": ctx.is_streaming,
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
            "cached_tokens": (details.cached_tokens or 0) if details else 0,
            "cost_usd": ctx.cost_usd,
            "latency_ms": (self.clock.monotonic() - ctx.started_at) * 1000.0,
            "ttfb_ms": (first_byte_at - ctx.started_at) * 1000.0 if first_byte_at else None,
            "status": status,
            "error": None,
            "attempt_spans": [
                {
                    "provider": span.provider,
                    "model": span.model,
                    "start_ms": (span.started_at - ctx.started_at) * 1000.0,
                    "duration_ms": (span.ended_at - span.started_at) * 1000.0,
                    "error": span.error,
                }
                for span in ctx.attempt_spans
            ],
        }
        if self.log_content:
            facts["prompt"] = ctx.prompt_text
            facts["completion"] = ctx.completion_text
        return facts


def _client_left() -> ClientDisconnectedError:
    return ClientDisconnectedError("the client closed the connection before the answer")


def _answer_text(completion: ChatCompletion) -> str | None:
    """The answer's text (every choice's, in order), for `log_content`."""
    texts = [c.message.content for c in completion.choices if c.message.content]
    return "\n".join(texts) if texts else None


async def _first_chunk(
    target: Target, request: ChatRequest, timeout_s: float
) -> tuple[ChatCompletionChunk, AsyncGenerator[ChatCompletionChunk, None]]:
    """Open `target`'s stream and wait for its first chunk within `timeout_s`."""
    provider = target.adapter.id
    upstream = target.adapter.chat_stream(request, target.model, timeout_s=timeout_s)
    try:
        async with asyncio.timeout(timeout_s):
            return await anext(upstream), upstream
    except StopAsyncIteration:
        raise UpstreamProtocolError(
            f"provider {provider!r} sent an empty stream", provider=provider
        ) from None
    except TimeoutError as exc:
        await upstream.aclose()
        raise UpstreamTimeoutError(
            f"provider {provider!r} did not start answering in time", provider=provider
        ) from exc


class ChunkStream:
    """The rest of a started stream. Iterate it to the end, or `aclose` it if the client left.

    The usage chunk the gateway asked for is withheld from clients that did not ask for it,
    but its numbers are kept for accounting either way.
    """

    def __init__(
        self,
        gateway: Gateway,
        ctx: RequestContext,
        first: ChatCompletionChunk,
        upstream: AsyncGenerator[ChatCompletionChunk, None],
        *,
        forward_usage: bool,
        cache_plan: CachePlan | None = None,
        assemble: bool = False,
    ) -> None:
        """With a `cache_plan`, the answer is assembled as it streams and stored once it has
        ended normally; a broken stream is never stored. `assemble` assembles it anyway
        (for `log_content`)."""
        self._gateway = gateway
        self._ctx = ctx
        self._first: ChatCompletionChunk | None = first
        self._upstream = upstream
        self._forward_usage = forward_usage
        self._is_finished = False
        self._cache_plan = cache_plan
        self._assembler = StreamAssembler() if cache_plan is not None or assemble else None

    def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        return self._relay()

    async def _relay(self) -> AsyncIterator[ChatCompletionChunk]:
        ctx = self._ctx
        try:
            if self._first is not None:
                first, self._first = self._first, None
                if self._keep(first):
                    yield first
            async for chunk in self._upstream:
                if self._keep(chunk):
                    yield chunk
        except UpstreamError as exc:
            self._is_finished = True
            self._gateway.attempts.stream_broke(ctx, exc)
            self._gateway.publish_failure(ctx, exc)
            self._gateway.settle(ctx)  # with the usage seen, if the cut came after it
            raise
        self._is_finished = True
        completion = self._assembler.result() if self._assembler is not None else None
        self._gateway.publish_completed(ctx, completion)
        self._gateway.settle(ctx)
        if completion is not None and self._cache_plan is not None:
            self._gateway.store_later(self._cache_plan, completion)

    def _keep(self, chunk: ChatCompletionChunk) -> bool:
        if self._assembler is not None:
            self._assembler.feed(chunk)
        if chunk.usage is not None:
            self._ctx.usage = chunk.usage
            if not chunk.choices:
                return self._forward_usage
        return True

    async def aclose(self) -> None:
        """Stop reading upstream (the client went away) and record why."""
        await self._upstream.aclose()
        if not self._is_finished:
            self._is_finished = True
            self._gateway.publish_failure(
                self._ctx, ClientDisconnectedError("the client closed the stream")
            )
            self._gateway.settle(self._ctx)
