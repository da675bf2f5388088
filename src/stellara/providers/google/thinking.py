"""OpenAI's `reasoning_effort` as Gemini's `thinkingConfig`.

Gemini 2.5 takes a token budget, Gemini 3 a level (see `versions`); a budget is also what a
model name without a version gets, as Gemini 3 still accepts budgets:

| reasoning_effort | Gemini 2.5 `thinkingBudget` | Gemini 3 `thinkingLevel` |
|------------------|-----------------------------|--------------------------|
| `none`           | 0 (thinking off)            | `MINIMAL` (Gemini 3 cannot turn thinking off) |
| `minimal`        | 512                         | `MINIMAL` |
| `low`            | 1024                        | `LOW` |
| `medium`         | 8192                        | `MEDIUM` |
| `high`           | 24576                       | `HIGH` |
| `xhigh`          | refused                     | `XHIGH` |

Models before 2.5 do not think: `none` needs nothing sent, any other effort is refused. A level
or budget a model does not offer (Gemini 3 Pro has no `MEDIUM`, 2.5 Pro cannot turn thinking
off) is Google's to refuse, with its own message. `includeThoughts` is never asked for: an OpenAI
answer has no place for thought summaries.
"""

from __future__ import annotations

from stellara.errors import InvalidRequestError
from stellara.providers.google.versions import (
    THINKING_LEVELS_SINCE,
    THINKING_SINCE,
    gemini_version,
)
from stellara.wire.google import ThinkingConfig

_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
_LEVELS = {
    "none": "MINIMAL",
    "minimal": "MINIMAL",
    "low": "LOW",
    "medium": "MEDIUM",
    "high": "HIGH",
    "xhigh": "XHIGH",
}


def thinking_config(effort: str | None, model: str) -> ThinkingConfig | None:
    """The `thinkingConfig` for `reasoning_effort` on `model` (the upstream model's name).

    Raises:
        InvalidRequestError: The effort is unknown for this model's generation, or the model
            does not think and the effort asks for thinking.
    """
    if effort is None:
        return None
    version = gemini_version(model)
    if version is not None and version < THINKING_SINCE:
        if effort == "none":
            return None
        raise InvalidRequestError(
            f"model {model!r} does not think, so reasoning_effort {effort!r} cannot be "
            "honoured; send 'none' or leave it out",
            param="reasoning_effort",
        )
    if version is not None and version >= THINKING_LEVELS_SINCE:
        level = _LEVELS.get(effort)
        if level is not None:
            return ThinkingConfig(thinking_level=level)
        valid = ", ".join(_LEVELS)
    else:
        budget = _BUDGETS.get(effort)
        if budget is not None:
            return ThinkingConfig(thinking_budget=budget)
        valid = ", ".join(_BUDGETS)
    raise InvalidRequestError(
        f"reasoning_effort {effort!r} is not one of {valid} for model {model!r}",
        param="reasoning_effort",
    )
