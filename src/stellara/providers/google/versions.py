"""Which Gemini generation a model name belongs to, for the features that differ by generation.

Gemini 2.5 brought thinking budgets and standard JSON Schema (`responseJsonSchema`,
`parametersJsonSchema`); Gemini 3 replaced budgets by thinking levels. The generation is read
from the name (`gemini-2.5-flash`, `models/gemini-3-pro-preview`); a name without one
(`gemini-flash-latest`, a tuned model) is taken for a current model, as Google's aliases point
at the newest generation.
"""

from __future__ import annotations

import re

_VERSION = re.compile(r"gemini-(\d+)(?:\.(\d+))?")
JSON_SCHEMA_SINCE = (2, 5)
THINKING_SINCE = (2, 5)
THINKING_LEVELS_SINCE = (3, 0)


def gemini_version(model: str) -> tuple[int, int] | None:
    """`(major, minor)` of a Gemini model name, or None when the name carries no version."""
    found = _VERSION.search(model)
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2) or 0)


def is_at_least(model: str, version: tuple[int, int]) -> bool:
    """Whether the model is of `version` or later; a name without a version counts as later."""
    found = gemini_version(model)
    return found is None or found >= version
