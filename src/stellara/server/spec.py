"""What a route is: its method and path, its endpoint, who may call it, the dialect its
errors speak, and what it takes and answers.

Every route is declared once, as a `Route` in a route module's `ROUTES`; the app registers
them, the boundary authenticates by their `access` and answers errors in their `dialect`, and
the OpenAPI document, the docs' API reference and the authorization-matrix test read the same
table. An endpoint is a plain async function of a `Call`.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aiohttp import web

from stellara.assembly import Runtime
from stellara.pipeline.context import RequestContext
from stellara.principal import Principal


class Access(enum.Enum):
    """Who may call a route. The boundary checks it before the endpoint runs."""

    PUBLIC = "public"  # no key (probes, the API description, metrics, the dashboard's login)
    KEYED = "keyed"  # any valid key, the master key included
    MODEL = "model"  # a key that calls models: the master key only with master_key_model_calls
    OWN_USER = "own_user"  # any valid key; the endpoint refuses another user's {userId}
    MASTER = "master"  # the master key only
    COOKIE = "cookie"  # the dashboard's session cookie; bearer keys are refused

    @property
    def needs_key(self) -> bool:
        return self not in (Access.PUBLIC, Access.COOKIE)


class Dialect(enum.Enum):
    """Whose error body a route answers errors with."""

    OPENAI = "openai"  # {"error": {"message", "type", "param", "code"}}
    ANTHROPIC = "anthropic"  # {"type": "error", "error": {"type", "message"}}
    GEMINI = "gemini"  # {"error": {"code", "message", "status"}}; keys also by x-goog-api-key


ANTHROPIC_VERSION = "anthropic-version"
_GOOGLE_KEY = "x-goog-api-key"
_GOOGLE_CLIENT = "x-goog-api-client"


def client_dialect(request: web.Request) -> Dialect:
    """The dialect the client speaks, where a path is shared (`GET /v1/models`): Anthropic's
    when it sends `anthropic-version`, as every Anthropic SDK does; Gemini's when it sends its
    key as Google's SDKs do (`x-goog-api-key` or `?key=`) or names itself in
    `x-goog-api-client`; else OpenAI's."""
    headers = request.headers
    if ANTHROPIC_VERSION in headers:
        return Dialect.ANTHROPIC
    if _GOOGLE_KEY in headers or _GOOGLE_CLIENT in headers or "key" in request.query:
        return Dialect.GEMINI
    return Dialect.OPENAI


Schema = type | tuple[type, ...] | Mapping[str, Any]
"""A body's schema in the OpenAPI document: a msgspec struct (a named component), several
(a body of any one of their shapes), or a raw JSON schema."""

NO_ERRORS: Mapping[int, str | None] = MappingProxyType({})
OBJECT: Mapping[str, Any] = MappingProxyType({"type": "object"})  # a JSON object, free-form


@dataclass(frozen=True, slots=True)
class Reply:
    """A route's successful answer, for the OpenAPI document."""

    description: str
    schema: Schema | None = None
    status: int = 200
    media: str = "application/json"
    stream: tuple[type, ...] = ()  # with `stream: true`: each text/event-stream event's data
    # A `speaks_client_dialect` route's answers to the clients of other dialects than its own.
    anthropic: type | None = None
    gemini: type | None = None

    def in_dialect(self, dialect: Dialect) -> type | None:
        """The answer's schema for a client of `dialect`, other than the route's own."""
        return {Dialect.ANTHROPIC: self.anthropic, Dialect.GEMINI: self.gemini}.get(dialect)


@dataclass(slots=True)
class Call:
    """One request to a route, as its endpoint sees it: the route as declared, the HTTP
    request, its id, the running gateway, and the caller the route's access admitted (None on
    public and cookie routes).
    A model call's endpoint sets `context` once the pipeline's context is open, so that an
    error answer carries the same `x-stellara-*` headers as a success."""

    route: Route
    request: web.Request
    request_id: str
    runtime: Runtime
    principal: Principal | None = None
    context: RequestContext | None = None

    @property
    def caller(self) -> Principal:
        """The admitted caller of a keyed route."""
        assert self.principal is not None, "only routes whose access needs a key have a caller"
        return self.principal


Endpoint = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One route, declared once (see the module docstring).

    Attributes:
        path: aiohttp's pattern (`{name}` or `{name:regex}` for a path parameter).
        body: the request body's schema; None for no body.
        query: the query parameters it reads, for the description.
        example: a request body the route answers, shown in the OpenAPI document (and sent
            by the schema fuzzer first).
        errors: error statuses particular to this route, beyond those its access, body and
            path parameters imply, with what they mean; None for one of those it never
            answers (a route with a model key's access that calls no model).
        speaks_client_dialect: answers, errors included, in the dialect of the client
            (`client_dialect`) rather than in `dialect`, which is then what is documented.
    """

    method: str
    path: str
    endpoint: Endpoint
    access: Access
    summary: str
    reply: Reply
    dialect: Dialect = Dialect.OPENAI
    body: Schema | None = None
    body_required: bool = True
    body_media: str = "application/json"
    query: tuple[str, ...] = ()
    example: Mapping[str, Any] | None = None
    errors: Mapping[int, str | None] = field(default_factory=lambda: NO_ERRORS)
    speaks_client_dialect: bool = False
