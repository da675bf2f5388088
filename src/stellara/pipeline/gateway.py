"""The gateway's request path, independent of HTTP: route, attempt, account.

`Gateway.complete` answers a non-streaming request; `Gateway.open_stream` starts a streaming
one and returns once the provider's first chunk is in hand, so a provider that fails before
answering still yields a proper HTTP error status instead of a broken stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from typing import TypeVar

from stellara import _json
from stellara._clock import Clock
from stellara._tasks import BackgroundTasks
from stellara.cache.assemble import StreamAssembler
from stellara.cache.replay import replay_stream
from stellara.cache.stage import AnswerCache, CachePlan
from stellara.catalog import Catalog
from stellara.errors import (
    ConcurrencyLimitedError,
    InvalidRequestError,
    StellaraError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from stellara.events import EventBus
from stellara.experiments.book import ExperimentBook
from stellara.limits import Estimator, Limiter, PriceKey, RequestEstimate, reserve
from stellara.pipeline.attempts import AttemptRunner, Call
from stellara.pipeline.context import RequestContext
from stellara.pipeline.params import ParamGuard, RequestParams
from stellara.pipeline.relayed import RelayedUsage
from stellara.pipeline.scope import Recorder, RequestScope, client_left
from stellara.providers.base import EmbeddingsAdapter
from stellara.routing.models import ModelTable, PublicModel, Target
from stellara.schema.chat import ChatCompletion, ChatCompletionChunk, ChatRequest, Usage
from stellara.schema.embeddings import EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage
from stellara.tokens import TokenCounter

T = TypeVar("T")
R = TypeVar("R", ChatRequest, EmbeddingsRequest)


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
        params: ParamGuard,
        limiter: Limiter | None = None,
        cache: AnswerCache | None = None,
        experiments: ExperimentBook | None = None,
        log_content: bool = False,
    ) -> None:
        """`limiter` None (no tier configured) leaves the state backend out of the request
        path altogether; `experiments` None (none configured or made) leaves assignment out.
        `log_content` puts prompt and answer text into the request events (for usage
        records); off by default, as they may hold personal data."""
        self.models = models
        self.clock = clock
        self.tokens = tokens
        self.limiter = limiter
        self.cache = cache
        self.experiments = experiments
        self.attempts = attempts
        self.params = params
        self.log_content = log_content
        self._background = BackgroundTasks()  # settles and cache writes after the answer
        self.recorder = Recorder(events, clock, catalog, self._background, log_content=log_content)
        self.estimator = Estimator(
            tokens,
            catalog,
            default_reserve=limiter.policy.default_max_tokens_reserve if limiter else 0,
            outputs=limiter.outputs if limiter else None,
        )

    @property
    def in_flight(self) -> int:
        """Requests between model resolution and their recorded end."""
        return self.recorder.in_flight

    def admit_early(self, ctx: RequestContext) -> None:
        """Before the request's body is read: refuse it when a limit it cannot pass refused its
        caller moments ago, or when its caller has its concurrency in flight (`limits.guard`),
        recorded like any refusal; otherwise hold its concurrency slot (`ctx.slot`, given back
        when it ends). Costs no state call."""
        limiter = self.limiter
        if limiter is None:
            return
        try:
            remembered, ctx.slot = limiter.guard.check(ctx.principal)
        except ConcurrencyLimitedError as exc:
            principal = ctx.principal
            tier = limiter.policy.tier_of(principal.user, principal.tier)
            limiter.events.concurrency_refused(
                principal.user, tier, exc, ctx.request_id, self.clock.time()
            )
            self.recorder.open(ctx).fail(exc)
            raise
        if remembered is not None:
            if remembered.event is not None:
                limiter.events.refused_again(remembered.event, ctx.request_id)
            error = remembered.error(self.clock.monotonic())
            self.recorder.open(ctx).fail(error)
            raise error

    def _resolve(self, ctx: RequestContext, name: str) -> PublicModel:
        """The public model, once per request: 404 or 403 before anything else is spent (and
        before the request counts as in flight)."""
        public = self.models.resolve(ctx.principal, name)
        ctx.public_model = public.name
        return public

    def _enter_experiment(
        self, ctx: RequestContext, public: PublicModel, request: ChatRequest
    ) -> tuple[PublicModel, ChatRequest]:
        """The model and request after the caller's variant of an experiment on `public`
        (unchanged outside experiments); the answer's headers and the record name it."""
        book = self.experiments
        if book is None:
            return public, request
        assignment = book.assign(ctx.principal, ctx.session_id, public.name, ctx.variant_pin)
        if assignment is None:
            return public, request
        ctx.experiment = assignment.experiment_id
        ctx.variant = assignment.variant.name
        ctx.in_experiment = assignment.is_counted
        return assignment.variant.apply(public, request)

    def _estimate(
        self, ctx: RequestContext, public: PublicModel, request: ChatRequest | EmbeddingsRequest
    ) -> RequestEstimate:
        """What the request will use, counted when the limits stage or the `cost` strategy
        first asks, with the tokenizer and prices of the model's first target that serves it
        (see `limits.estimate`)."""
        if isinstance(request, ChatRequest):
            first = public.targets[0]
            return self.estimator.chat(
                request,
                PriceKey(first.provider_type, first.model),
                user=ctx.principal.user,
                public_model=public.name,
            )
        serving = next(
            (t for t in public.targets if isinstance(t.adapter, EmbeddingsAdapter)), None
        )
        # No embeddings target: the route refuses it next, so only the request is counted.
        price = PriceKey(serving.provider_type, serving.model) if serving is not None else None
        return self.estimator.embeddings(request, price)

    async def _admit(
        self, ctx: RequestContext, estimate: RequestEstimate, *, is_chat: bool
    ) -> None:
        """The limits stage: reserve the request's estimate, or raise the refusal (429, or 400
        for a request that can never fit its limits). A chat request's settle teaches the
        limiter how long its user's answers are (`is_chat`).

        Runs after the model name is known to be valid and allowed (a 404 or 403 costs the
        caller nothing) and before any provider is chosen.
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
        amounts = reserve(estimate, policy, ctx.param_names)
        public_model = ctx.public_model if is_chat else None
        ticket = await limiter.admit(policy, amounts, ctx.request_id, public_model=public_model)
        ctx.ticket = ticket
        ticket.raise_if_refused()

    def store_later(self, plan: CachePlan, completion: ChatCompletion) -> None:
        """Cache an answer after it was sent (the L2 write need not delay it)."""
        if self.cache is not None:
            self._background.run(self.cache.store(plan, completion))

    async def drain(self) -> None:
        """Wait for every pending settle and cache store (clean shutdown)."""
        await self._background.drain()

    def _cache_plan(self, ctx: RequestContext, request: ChatRequest) -> CachePlan | None:
        if self.cache is None:
            return None
        partition = f"{ctx.experiment}/{ctx.variant}" if ctx.experiment else ""
        return self.cache.plan(ctx.principal, request, ctx.cache_control, partition)

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
        self,
        ctx: RequestContext,
        models: list[PublicModel],
        call: Call[T],
        *,
        price: RequestEstimate,
        stream: bool,
        params: RequestParams[ChatRequest] | RequestParams[EmbeddingsRequest] | None = None,
    ) -> T:
        answer = await self.attempts.run(
            ctx,
            models,
            call,
            price=price,
            stream=stream,
            strategy=ctx.routing_strategy,
            providers=ctx.routing_providers,
            refuses=params.refusal if params is not None else None,
        )
        ctx.first_byte_at = self.clock.monotonic()
        return answer

    async def complete(self, ctx: RequestContext, request: ChatRequest) -> ChatCompletion:
        """Answer a non-streaming request or raise a `StellaraError`."""
        public = self._resolve(ctx, request.model)
        public, request = self._enter_experiment(ctx, public, request)
        self._keep_prompt(ctx, request.messages)
        scope = self.recorder.open(ctx)
        try:
            estimate = self._estimate(ctx, public, request)
            await self._admit(ctx, estimate, is_chat=True)
            plan = self._cache_plan(ctx, request)
            hit = await self._cache_hit(ctx, plan)
            if hit is not None:
                scope.succeed(hit)
                return hit
            models = self._candidates(public)
            params = self.params.plan(request, ctx.param_names)

            async def call(target: Target, timeout_s: float) -> ChatCompletion:
                sent = _fitted(ctx, request, params, target)
                return await target.adapter.chat(sent, target.model, timeout_s=timeout_s)

            completion = await self._run(
                ctx, models, call, price=estimate, stream=False, params=params
            )
        except BaseException as exc:
            scope.end_by(exc)
            raise
        ctx.usage = completion.usage
        scope.succeed(completion)
        if plan is not None:
            self.store_later(plan, completion)
        return completion

    async def open_stream(self, ctx: RequestContext, request: ChatRequest) -> ChunkStream:
        """Start a streaming request; raises before any byte is sent if the provider fails.

        The returned stream holds the request's scope: the request ends when the stream does,
        however it does."""
        ctx.is_streaming = True
        public = self._resolve(ctx, request.model)
        public, request = self._enter_experiment(ctx, public, request)
        self._keep_prompt(ctx, request.messages)
        scope = self.recorder.open(ctx)
        try:
            estimate = self._estimate(ctx, public, request)
            await self._admit(ctx, estimate, is_chat=True)
            plan = self._cache_plan(ctx, request)
            hit = await self._cache_hit(ctx, plan)
            if hit is not None:
                replay = replay_stream(hit, include_usage=True)
                first = await anext(replay)
                return ChunkStream(
                    self, scope, first, replay, forward_usage=request.wants_stream_usage
                )
            return await self._start_stream(scope, request, public, plan, estimate)
        except BaseException as exc:
            scope.end_by(exc)
            raise

    async def _start_stream(
        self,
        scope: RequestScope,
        request: ChatRequest,
        public: PublicModel,
        plan: CachePlan | None,
        estimate: RequestEstimate,
    ) -> ChunkStream:
        """The first target that delivers a first chunk wins; failures before it fail over
        silently, since the client has seen nothing yet."""
        models = self._candidates(public)
        ctx = scope.ctx
        params = self.params.plan(request, ctx.param_names)

        async def start(
            target: Target, timeout_s: float
        ) -> tuple[ChatCompletionChunk, AsyncGenerator[ChatCompletionChunk, None]]:
            return await _first_chunk(target, _fitted(ctx, request, params, target), timeout_s)

        first, upstream = await self._run(
            ctx, models, start, price=estimate, stream=True, params=params
        )
        return ChunkStream(
            self,
            scope,
            first,
            upstream,
            forward_usage=request.wants_stream_usage,
            cache_plan=plan,
            assemble=self.log_content,
            relayed=RelayedUsage(self.tokens, estimate),
        )

    async def embed(self, ctx: RequestContext, request: EmbeddingsRequest) -> EmbeddingsResponse:
        """Embed the request's inputs with the first target that serves embeddings."""
        public = self._resolve(ctx, request.model)
        if self.log_content:
            ctx.prompt_text = _json.encode(request.texts()).decode()
        scope = self.recorder.open(ctx)
        try:
            estimate = self._estimate(ctx, public, request)
            await self._admit(ctx, estimate, is_chat=False)
            response = await self._embed(ctx, request, public, estimate)
        except BaseException as exc:
            scope.end_by(exc)
            raise
        scope.succeed()
        return response

    async def _embed(
        self,
        ctx: RequestContext,
        request: EmbeddingsRequest,
        public: PublicModel,
        estimate: RequestEstimate,
    ) -> EmbeddingsResponse:
        models = self._candidates(public, for_embeddings=True)
        params = self.params.plan(request, ctx.param_names)

        async def call(target: Target, timeout_s: float) -> EmbeddingsResponse:
            adapter = target.adapter
            assert isinstance(adapter, EmbeddingsAdapter)  # _candidates kept only those
            sent = _fitted(ctx, request, params, target)
            return await adapter.embed(sent, target.model, timeout_s=timeout_s)

        response = await self._run(ctx, models, call, price=estimate, stream=False, params=params)
        prompt_tokens = response.usage.prompt_tokens
        texts = request.texts()
        if prompt_tokens == 0 and texts:  # the provider reports no usage (Gemini): estimate it
            prompt_tokens = self.tokens.count_texts(texts, ctx.provider_model)
            response.usage = EmbeddingsUsage(prompt_tokens, prompt_tokens)
            ctx.usage_estimated = True
        ctx.usage = Usage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens)
        return response

    def _keep_prompt(self, ctx: RequestContext, messages: object) -> None:
        if self.log_content:
            ctx.prompt_text = _json.encode(messages).decode()


def _fitted(ctx: RequestContext, request: R, params: RequestParams[R] | None, target: Target) -> R:
    """What `target` is sent: the request without the parameters its provider cannot honour,
    when its model drops them (`ctx.dropped_params`, for the answer's header)."""
    if params is None:
        return request
    fit = params.fit(target)
    ctx.dropped_params = fit.dropped
    return fit.request


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
    but its numbers are kept for accounting either way; a stream that ends without one is
    charged what it relayed (`RelayedUsage`).
    """

    def __init__(
        self,
        gateway: Gateway,
        scope: RequestScope,
        first: ChatCompletionChunk,
        upstream: AsyncGenerator[ChatCompletionChunk, None],
        *,
        forward_usage: bool,
        cache_plan: CachePlan | None = None,
        assemble: bool = False,
        relayed: RelayedUsage | None = None,
    ) -> None:
        """With a `cache_plan`, the answer is assembled as it streams and stored once it has
        ended normally; a broken stream is never stored. `assemble` assembles it anyway
        (for `log_content`). A provider's stream counts what it relays in `relayed`, charged
        if it ends without the provider's usage (a replayed cache hit costs nothing)."""
        self._gateway = gateway
        self._scope = scope
        self._ctx = scope.ctx
        self._first: ChatCompletionChunk | None = first
        self._upstream = upstream
        self._forward_usage = forward_usage
        self._cache_plan = cache_plan
        self._assembler = StreamAssembler() if cache_plan is not None or assemble else None
        self._relayed = relayed
        if relayed is not None:
            scope.charge_relayed(relayed)

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
            self._gateway.attempts.stream_broke(ctx, exc)
            self._scope.fail(exc)  # with the usage seen, if the cut came after it
            raise
        completion = self._assembler.result() if self._assembler is not None else None
        self._scope.succeed(completion)
        if completion is not None and self._cache_plan is not None:
            self._gateway.store_later(self._cache_plan, completion)

    def _keep(self, chunk: ChatCompletionChunk) -> bool:
        if self._assembler is not None:
            self._assembler.feed(chunk)
        if self._relayed is not None:
            self._relayed.feed(chunk)
        if chunk.usage is not None:
            self._ctx.usage = chunk.usage
            if not chunk.choices:
                return self._forward_usage
        return True

    def fail(self, error: StellaraError) -> None:
        """The answer cannot go on (`error`, met while relaying it): that ends the request,
        not the client leaving, when the stream is closed."""
        self._scope.fail(error)

    async def aclose(self) -> None:
        """Stop reading upstream; a request not ended yet ends as the client leaving. Call it
        however the answer ended (a no-op after a complete or failed stream)."""
        await self._upstream.aclose()
        self._scope.fail(client_left())
