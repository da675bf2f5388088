"""What a stream consumed, counted by the gateway for when the provider never says.

A provider reports a stream's usage in its last chunk, so a stream that ends early (the
client gone, the provider cut off, a timeout after the first byte, an answer the encoder
could not send) ends without it. It still consumed the prompt and every token sent so far,
and the provider bills them: `RelayedUsage` counts them, so the request is charged and its
limits settled to an estimate rather than to nothing. Usage the provider did report is
always used instead (see `RequestScope.charge_relayed`).
"""

from __future__ import annotations

from stellara.limits import RequestEstimate
from stellara.schema.chat import ChatCompletionChunk, Delta, Usage
from stellara.tokens import TokenCounter


class RelayedUsage:
    """The text of what one stream relayed, counted only if the provider's usage never came.

    Feeding keeps each chunk's text (content, refusal, tool and function call names and
    arguments) without counting anything: most streams end with the provider's usage, and
    counting is the expensive part.
    """

    __slots__ = ("_estimate", "_pieces", "_tokens")

    def __init__(self, tokens: TokenCounter, estimate: RequestEstimate) -> None:
        """`estimate` is the request's own (the limits stage's), so a prompt already counted
        for admission is not counted again."""
        self._tokens = tokens
        self._estimate = estimate
        self._pieces: list[str] = []

    def feed(self, chunk: ChatCompletionChunk) -> None:
        """Keep the text of `chunk`, a chunk relayed to the client."""
        pieces = self._pieces
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                pieces.append(delta.content)
            if delta.refusal:
                pieces.append(delta.refusal)
            if delta.tool_calls or delta.function_call:
                pieces += _call_texts(delta)

    def usage(self, model: str) -> Usage:
        """The prompt as the request's estimate counts it, and what was relayed counted with
        `model`'s tokenizer (the model that answered)."""
        prompt = self._estimate.prompt_tokens
        text = "".join(self._pieces)
        completion = self._tokens.count_text(text, model) if text else 0
        return Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )


def _call_texts(delta: Delta) -> list[str]:
    """The names and argument pieces of the tool and function calls in `delta`."""
    calls = [tool.function for tool in delta.tool_calls or () if tool.function is not None]
    if delta.function_call is not None:
        calls.append(delta.function_call)
    return [text for call in calls for text in (call.name, call.arguments) if text]
