"""Counting a prompt's tokens for a public model, before (and without) calling it.

Anthropic's clients ask for counts (`POST /v1/messages/count_tokens`; Claude Code does, to
manage its context). The model's first target answers when its provider counts tokens
itself (Anthropic); otherwise, or when that provider cannot answer now, the gateway's own
tokenizer estimates the count, and the answer says it is an estimate.

A count is not a model call: it is authenticated and the key must be allowed the model, but
it passes no limit or quota, is never cached, leaves no usage record and costs nothing; an
upstream count is not routed, retried or fed to the breakers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from stellara.errors import UpstreamBadRequestError, UpstreamError
from stellara.pipeline.attempts import AttemptRunner
from stellara.principal import Principal
from stellara.providers.base import TokenCountingAdapter
from stellara.routing.models import ModelTable
from stellara.schema.chat import ChatRequest
from stellara.tokens import TokenCounter

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TokenCount:
    """A prompt's input tokens; `is_estimate` when the gateway's tokenizer counted them."""

    input_tokens: int
    is_estimate: bool


@dataclass(frozen=True, slots=True)
class PromptCounter:
    """Counts prompts for public models (see the module docstring)."""

    models: ModelTable
    tokens: TokenCounter
    attempts: AttemptRunner

    async def count(
        self, principal: Principal, request: ChatRequest, *, timeout_s: float
    ) -> TokenCount:
        """The input tokens of `request`'s prompt for its model.

        Raises:
            ModelNotFoundError, PermissionDeniedError: as a model call would.
            UpstreamBadRequestError: the counting provider refused the prompt as invalid.
        """
        target = self.models.resolve(principal, request.model).targets[0]
        adapter = target.adapter
        if isinstance(adapter, TokenCountingAdapter):
            try:
                counted = await adapter.count_tokens(request, target.model, timeout_s=timeout_s)
            except UpstreamBadRequestError as exc:
                self.attempts.scrub_error(exc)
                raise
            except UpstreamError as exc:
                logger.warning(
                    "provider %s could not count tokens (%s); answering an estimate",
                    adapter.id,
                    exc.code,
                )
            else:
                return TokenCount(counted, is_estimate=False)
        return TokenCount(self.tokens.count_prompt(request, target.model), is_estimate=True)
