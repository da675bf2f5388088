"""Anthropic's Models API wire types (`GET /v1/models`, `GET /v1/models/{model_id}`), as the
gateway answers an Anthropic client listing the public models."""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

Lifecycle = Literal["active", "deprecated", "retired"]
LIFECYCLES: tuple[Lifecycle, ...] = ("active", "deprecated", "retired")


class ModelInfo(Struct):
    type: Literal["model"]
    id: str
    display_name: str
    created_at: str  # RFC 3339
    lifecycle: Lifecycle


class ModelPage(Struct):
    """One page of the list; `first_id` and `last_id` are the page's ends (null when empty),
    the cursors for `before_id` and `after_id`."""

    data: list[ModelInfo]
    has_more: bool
    first_id: str | None
    last_id: str | None
