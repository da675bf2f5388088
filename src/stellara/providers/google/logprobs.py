"""Gemini's `logprobsResult` as OpenAI's `choices[].logprobs` (answers and stream chunks alike).

Gemini gives, per decoding step, the chosen token (`chosenCandidates`) and the most likely ones
(`topCandidates`, present when `logprobs` asked for some). Each step becomes one
`{token, logprob, bytes, top_logprobs}` entry of `logprobs.content`; `bytes` is the token's UTF-8,
as OpenAI gives it. Gemini has no refusal tokens, so `refusal` is null.
"""

from __future__ import annotations

import msgspec

from stellara.wire.google import LogprobsCandidate, LogprobsResult


class _TopLogprob(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int] | None


class _TokenLogprob(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[_TopLogprob]


class _ChoiceLogprobs(msgspec.Struct):
    content: list[_TokenLogprob] | None
    refusal: list[_TokenLogprob] | None = None


_encoder = msgspec.json.Encoder()


def openai_logprobs(result: LogprobsResult) -> msgspec.Raw:
    """The `logprobs` object of one choice (or chunk choice), encoded."""
    content = []
    for step, chosen in enumerate(result.chosen_candidates):
        top = result.top_candidates[step].candidates if step < len(result.top_candidates) else []
        content.append(
            _TokenLogprob(
                token=chosen.token,
                logprob=chosen.log_probability,
                bytes=list(chosen.token.encode()),
                top_logprobs=[_top(candidate) for candidate in top],
            )
        )
    return msgspec.Raw(_encoder.encode(_ChoiceLogprobs(content=content)))


def _top(candidate: LogprobsCandidate) -> _TopLogprob:
    return _TopLogprob(
        token=candidate.token,
        logprob=candidate.log_probability,
        bytes=list(candidate.token.encode()),
    )
