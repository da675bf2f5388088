"""The shapes of the gateway's own JSON answers, for the OpenAPI document (the model-call
shapes are the decoders' own types in `stellara.schema` and the dialects' wire types)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec


class ErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(msgspec.Struct):
    """The OpenAI error body every OpenAI-dialect route answers errors with."""

    error: ErrorDetail


class ModelEntry(msgspec.Struct):
    id: str
    object: str
    created: int
    owned_by: str


class ModelList(msgspec.Struct):
    object: str
    data: list[ModelEntry]


class HealthStatus(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    checks: dict[str, dict[str, Any]]


class LimitEntry(msgspec.Struct):
    """One limit's use; `reset_at` (ISO-8601 UTC) and `reset_at_epoch_s` are the same instant,
    when `remaining` next grows. `window_s` only for sliding windows."""

    used: float
    limit: float
    remaining: float
    reset_at: str
    reset_at_epoch_s: float
    window_s: float | None = None


class LimitStatus(msgspec.Struct):
    """Per window (`daily`/`monthly`/`session`, or `rate`/`burst`) and dimension;
    `local_admissions` and `in_flight` are this process's (see the route)."""

    user: str
    tier: str | None
    shadow: bool
    limited: bool
    windows: dict[str, dict[str, LimitEntry]]
    local_admissions: int
    in_flight: int


class LimitReset(msgspec.Struct):
    user: str
    reset: str


class FeedbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /v1/feedback`: a value of a configured metric on a request the caller's user
    made (its `x-stellara-request-id`)."""

    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    metric: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    value: bool | float


class FeedbackReceipt(msgspec.Struct):
    """What was stored (booleans as 1 and 0) and the experiment variant it rated, if any."""

    request_id: str
    metric: str
    value: float
    experiment: str | None
    variant: str | None
