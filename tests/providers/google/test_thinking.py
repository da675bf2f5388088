"""`reasoning_effort` → `thinkingConfig`: a budget for Gemini 2.5, a level for Gemini 3."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stellara.errors import InvalidRequestError
from stellara.providers.google.chat import build_generate_body
from stellara.schema.chat import request_decoder


def thinking_sent(model: str, effort: str) -> Any:
    body = {
        "model": "alias",
        "messages": [{"role": "user", "content": "Hi"}],
        "reasoning_effort": effort,
    }
    sent = json.loads(build_generate_body(request_decoder.decode(json.dumps(body)), model))
    return sent.get("generationConfig", {}).get("thinkingConfig")


@pytest.mark.parametrize(
    ("effort", "budget"),
    [("none", 0), ("minimal", 512), ("low", 1024), ("medium", 8192), ("high", 24576)],
)
@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-flash-latest"])
def test_thinking_effort_is_a_budget_before_gemini_3(model: str, effort: str, budget: int) -> None:
    assert thinking_sent(model, effort) == {"thinkingBudget": budget}


@pytest.mark.parametrize(
    ("effort", "level"),
    [
        ("none", "MINIMAL"),
        ("minimal", "MINIMAL"),
        ("low", "LOW"),
        ("medium", "MEDIUM"),
        ("high", "HIGH"),
        ("xhigh", "XHIGH"),
    ],
)
@pytest.mark.parametrize("model", ["gemini-3-pro-preview", "models/gemini-3.1-flash"])
def test_thinking_effort_is_a_level_from_gemini_3(model: str, effort: str, level: str) -> None:
    assert thinking_sent(model, effort) == {"thinkingLevel": level}


def test_thinking_none_for_a_model_that_does_not_think_sends_nothing() -> None:
    assert thinking_sent("gemini-2.0-flash", "none") is None


@pytest.mark.parametrize(
    ("model", "effort"),
    [
        ("gemini-2.0-flash", "low"),
        ("gemini-1.5-pro", "high"),
        ("gemini-2.5-flash", "xhigh"),
        ("gemini-3-pro", "max"),
    ],
)
def test_thinking_effort_a_model_cannot_honour_is_refused(model: str, effort: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        thinking_sent(model, effort)
    assert caught.value.param == "reasoning_effort"
    assert repr(effort) in str(caught.value)
