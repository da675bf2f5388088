"""The parameter policy in the request path, without sockets: per attempt, on the provider
type of the target actually called; refused, dropped and reported, or skipped for a target
that can take the request."""

from __future__ import annotations

from typing import Any

import pytest

from stellara.errors import InvalidRequestError, NoHealthyProviderError, UpstreamUnavailableError
from stellara.events import EventBus, RequestCompleted, RequestFailed
from stellara.pipeline.gateway import Gateway
from stellara.schema.embeddings import EmbeddingsRequest
from stellara.testing import (
    EventRecorder,
    ManualClock,
    ScriptedAdapter,
    ScriptedEmbeddingsAdapter,
    chat_request,
    request_context,
    scripted_gateway,
)

DOWN = UpstreamUnavailableError("upstream said 503", provider="a", upstream_status=503)
TYPES = {"claude": "anthropic", "gemini": "google", "gpt": "openai"}


def gateway(
    *adapters: ScriptedAdapter, events: EventBus | None = None, **config: Any
) -> tuple[Gateway, ManualClock]:
    clock = ManualClock()
    built = scripted_gateway(
        *adapters,
        config={"resilience": {"retry": {"max_attempts": 1}}, **config},
        clock=clock,
        events=events,
        types=TYPES,
    )
    return built, clock


def model(name: str, *providers: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "targets": [{"provider": p, "model": "m"} for p in providers], **fields}


async def test_params_a_parameter_the_provider_lacks_is_refused_naming_it_and_the_provider():
    claude = ScriptedAdapter("claude")
    events = EventBus()
    recorder = EventRecorder(events)
    gw, clock = gateway(claude, events=events, models=[model("smart", "claude")])
    ctx = request_context(clock)
    with pytest.raises(InvalidRequestError) as caught:
        await gw.complete(ctx, chat_request(logprobs=True, seed=3))
    error = caught.value
    assert (error.status_code, error.param) == (400, "logprobs")
    assert error.code == "unsupported_parameter"
    assert "'logprobs', 'seed'" in error.message
    assert "'claude' (anthropic)" in error.message
    assert "drop_unsupported_params" in error.message
    assert claude.calls == []
    assert ctx.attempts == 0
    assert "skipped claude/m: logprobs unsupported" in ctx.route
    (failed,) = recorder.of(RequestFailed)
    assert (failed.status, failed.error) == (400, "unsupported_parameter")


async def test_params_values_that_ask_nothing_pass_to_every_provider():
    claude = ScriptedAdapter("claude")
    gw, clock = gateway(claude, models=[model("smart", "claude")])
    request = chat_request(logprobs=False, n=1, temperature=1.0, parallel_tool_calls=True)
    await gw.complete(request_context(clock), request)
    assert claude.calls[0].request is request


async def test_params_a_request_setting_nothing_any_provider_lacks_has_no_plan():
    gw, _ = gateway(ScriptedAdapter("claude"), models=[model("smart", "claude")])
    assert gw.params.plan(chat_request(temperature=0.3, max_tokens=9, stop="x")) is None
    assert gw.params.plan(chat_request(seed=1)) is not None


async def test_params_dropped_when_the_config_drops_them_and_reported():
    gemini = ScriptedAdapter("gemini")
    events = EventBus()
    recorder = EventRecorder(events)
    gw, clock = gateway(
        gemini, events=events, models=[model("smart", "gemini")], drop_unsupported_params=True
    )
    ctx = request_context(clock)
    await gw.complete(ctx, chat_request(logit_bias={"1": 2.0}, user="u1", seed=4))
    sent = gemini.calls[0].request
    assert (sent.logit_bias, sent.user, sent.seed) == (None, None, 4)  # seed is Gemini's too
    assert ctx.dropped_params == ("logit_bias", "user")
    (completed,) = recorder.of(RequestCompleted)
    assert completed.dropped_params == ("logit_bias", "user")


@pytest.mark.parametrize(("top", "own", "is_dropped"), [(False, True, True), (True, False, False)])
async def test_params_a_models_own_setting_wins_over_the_top_level_one(top, own, is_dropped):
    claude = ScriptedAdapter("claude")
    gw, clock = gateway(
        claude,
        models=[model("smart", "claude", drop_unsupported_params=own)],
        drop_unsupported_params=top,
    )
    ctx = request_context(clock)
    if is_dropped:
        await gw.complete(ctx, chat_request(verbosity="low"))
        assert claude.calls[0].request.verbosity is None
        assert ctx.dropped_params == ("verbosity",)
    else:
        with pytest.raises(InvalidRequestError, match="verbosity"):
            await gw.complete(ctx, chat_request(verbosity="low"))


async def test_params_a_refused_parameter_is_refused_even_when_dropping():
    claude = ScriptedAdapter("claude")
    gw, clock = gateway(claude, models=[model("smart", "claude")], drop_unsupported_params=True)
    with pytest.raises(InvalidRequestError) as caught:
        await gw.complete(request_context(clock), chat_request(n=2))
    assert caught.value.param == "n"
    assert "drop_unsupported_params" not in caught.value.message
    assert claude.calls == []


async def test_params_anthropic_temperature_above_one_is_refused_or_dropped_not_clamped():
    claude = ScriptedAdapter("claude")
    gw, clock = gateway(claude, models=[model("strict", "claude"), model("lenient", "claude")])
    with pytest.raises(InvalidRequestError) as caught:
        await gw.complete(request_context(clock), chat_request(model="strict", temperature=1.5))
    assert caught.value.param == "temperature"
    assert "temperature 1.5 is above 1" in caught.value.message

    lenient, clock = gateway(
        claude, models=[model("smart", "claude")], drop_unsupported_params=True
    )
    ctx = request_context(clock)
    await lenient.complete(ctx, chat_request(temperature=1.5))
    assert claude.calls[0].request.temperature is None  # Anthropic's default: 1
    assert ctx.dropped_params == ("temperature",)


async def test_params_a_target_that_cannot_take_the_request_is_skipped_for_one_that_can():
    claude, gpt = ScriptedAdapter("claude"), ScriptedAdapter("gpt")
    gw, clock = gateway(claude, gpt, models=[model("smart", "claude", "gpt")])
    ctx = request_context(clock)
    await gw.complete(ctx, chat_request(logprobs=True))
    assert claude.calls == []
    assert gpt.calls[0].request.logprobs is True
    assert (ctx.provider_id, ctx.attempts, ctx.dropped_params) == ("gpt", 1, ())
    assert "skipped claude/m: logprobs unsupported" in ctx.route


async def test_params_the_last_provider_error_stands_when_the_other_targets_refuse():
    gpt, claude = ScriptedAdapter("gpt", DOWN), ScriptedAdapter("claude")
    gw, clock = gateway(gpt, claude, models=[model("smart", "gpt", "claude")])
    ctx = request_context(clock)
    with pytest.raises(UpstreamUnavailableError):
        await gw.complete(ctx, chat_request(logprobs=True))
    assert (len(gpt.calls), claude.calls) == (1, [])
    assert "skipped claude/m: logprobs unsupported" in ctx.route


async def test_params_an_open_breaker_on_the_able_target_is_503_not_the_refusal():
    gpt, claude = ScriptedAdapter("gpt"), ScriptedAdapter("claude")
    gw, clock = gateway(gpt, claude, models=[model("smart", "gpt", "claude")])
    gw.attempts.breakers.get("gpt", "m").force_open(clock.monotonic())
    with pytest.raises(NoHealthyProviderError):
        await gw.complete(request_context(clock), chat_request(logprobs=True))


async def test_params_each_fallback_model_applies_its_own_setting_to_its_own_provider():
    claude, gemini = ScriptedAdapter("claude"), ScriptedAdapter("gemini")
    gw, clock = gateway(
        claude,
        gemini,
        models=[
            model("smart", "claude", fallbacks=["backup"]),
            model("backup", "gemini", drop_unsupported_params=True),
        ],
    )
    ctx = request_context(clock)
    await gw.complete(ctx, chat_request(logprobs=True, verbosity="low"))
    assert claude.calls == []
    sent = gemini.calls[0].request
    assert (sent.logprobs, sent.verbosity) == (True, None)  # Gemini's logprobs are sent
    assert (ctx.provider_id, ctx.dropped_params) == ("gemini", ("verbosity",))


async def test_params_streams_are_fitted_and_reported_too():
    claude = ScriptedAdapter("claude")
    gw, clock = gateway(claude, models=[model("smart", "claude")], drop_unsupported_params=True)
    ctx = request_context(clock)
    stream = await gw.open_stream(ctx, chat_request(stream=True, logit_bias={"1": 2.0}))
    chunks = [chunk async for chunk in stream]
    assert chunks
    assert claude.calls[0].kind == "stream"
    assert claude.calls[0].request.logit_bias is None
    assert ctx.dropped_params == ("logit_bias",)


async def test_params_embeddings_are_fitted_per_target_too():
    gemini = ScriptedEmbeddingsAdapter("gemini")
    gw, clock = gateway(gemini, models=[model("smart", "gemini")], drop_unsupported_params=True)
    ctx = request_context(clock)
    await gw.embed(ctx, EmbeddingsRequest(model="smart", input="hi", user="u", dimensions=3))
    sent = gemini.embed_calls[0].request
    assert (sent.user, sent.dimensions) == (None, 3)
    assert ctx.dropped_params == ("user",)
