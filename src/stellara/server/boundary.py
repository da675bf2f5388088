"""The HTTP boundary: the one place where requests get their id and their caller, and where
errors become answers.

`RouteHandler.handle` is what aiohttp calls for every route, the declared ones and the
catch-all alike: it gives the request its id, admits the caller by the route's `access`, runs
the endpoint with a `Call`, and turns every `StellaraError` into the error body of the route's
dialect and anything unexpected into a logged 500 naming the request id (never a hang or an
HTML page). It wraps each route rather than sitting in aiohttp's middleware chain: that chain
costs about 13,000 instructions per request (callgrind), for nothing a wrapper does not do.

`unknown_route` answers every path no route declares: 404 or 405, in the dialect its path
suggests.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web

from stellara.assembly import Runtime
from stellara.errors import (
    AuthenticationError,
    InternalError,
    MethodNotAllowedError,
    PermissionDeniedError,
    RouteNotFoundError,
    StellaraError,
)
from stellara.principal import Principal
from stellara.server.errors import error_response
from stellara.server.intake import (
    REQUEST_ID,
    bearer_token,
    check_headers,
    google_api_key,
    new_request_id,
    response_headers,
)
from stellara.server.spec import NO_ERRORS, Access, Call, Dialect, Reply, Route, client_dialect

logger = logging.getLogger(__name__)

SESSION_COOKIE = "stellara_dashboard"
_ANTHROPIC_PATHS = ("/v1/messages",)
# Gemini's API lives under /v1beta/, and its model actions under /v1/ too (`models/x:action`).
_GEMINI_PATH = re.compile(r"/v1beta/|/v1/models/[^/]*:")
UNKNOWN_ROUTE_PATH = "/{tail}"  # the catch-all's canonical form, registered last


class RouteHandler:
    """The aiohttp handler of one route, bound to one running gateway."""

    def __init__(self, route: Route, runtime: Runtime) -> None:
        self.route = route
        self._runtime = runtime

    async def handle(self, request: web.Request) -> web.StreamResponse:
        call = Call(self.route, request, new_request_id(), self._runtime)
        try:
            check_headers(request, self._runtime.config.server.max_header_bytes)
            call.principal = await admit(self.route.access, call)
            response = await self.route.endpoint(call)
        except StellaraError as exc:
            answer = error_response(self.dialect(request), exc, response_headers(call))
            _forget_frames(exc)
            return answer
        except Exception:  # the boundary: logged, answered 500, never a hang or an HTML page
            # A model call's own scope has recorded it already, as a 500 naming this request.
            logger.exception("unexpected error in request %s", call.request_id)
            error = InternalError.of_request(call.request_id)
            return error_response(self.dialect(request), error, response_headers(call))
        finally:
            if call.context is not None:
                call.context.release()  # its concurrency slot, if the scope did not yet
        if not response.prepared:
            response.headers.setdefault(REQUEST_ID, call.request_id)
        return response

    def dialect(self, request: web.Request) -> Dialect:
        """Whose error body this route answers with."""
        if self.route.speaks_client_dialect:
            return client_dialect(request)
        return self.route.dialect


class UnknownRouteHandler(RouteHandler):
    """The catch-all: its errors speak the dialect the path or the client suggests (an
    Anthropic client's typo, or its call to an Anthropic route the gateway does not serve
    such as `/v1/messages/batches`, gets Anthropic's error body)."""

    def dialect(self, request: web.Request) -> Dialect:
        if request.path.startswith(_ANTHROPIC_PATHS):
            return Dialect.ANTHROPIC
        if _GEMINI_PATH.match(request.path):
            return Dialect.GEMINI
        return client_dialect(request)


def _forget_frames(error: BaseException) -> None:
    """Drop the tracebacks of an answered `error` and of the errors it was raised from.

    An error can outlive its request: a rate-limit refusal is kept by the request's limits
    ticket. Its traceback holds every frame it passed through, and those frames hold the
    ticket and the decoded request: a reference cycle, which only the cyclic collector frees,
    after tens of thousands of allocations. With multi-megabyte bodies that kept gigabytes
    alive; without the tracebacks the request is freed as soon as its answer is sent.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__


async def admit(access: Access, call: Call) -> Principal | None:
    """The caller `access` admits, or the refusal (401, 403). Public and cookie routes have
    no principal: a cookie opens the dashboard's feed, not the API."""
    runtime = call.runtime
    if access is Access.PUBLIC:
        return None
    if access is Access.COOKIE:
        if not await runtime.sessions.is_valid(call.request.cookies.get(SESSION_COOKIE)):
            raise AuthenticationError("Sign in to the dashboard first.")
        return None
    principal = await runtime.auth.authenticate(
        _caller_key(call), model_call=access is Access.MODEL
    )
    if access is Access.MASTER and not principal.is_master:
        raise PermissionDeniedError("This route needs the master key.", code="master_key_required")
    return principal


def _caller_key(call: Call) -> str | None:
    """The key a caller sent: as a bearer token or `x-api-key`, and from Gemini clients (on
    their routes, or on a shared one) also as Google's SDKs send it, `x-goog-api-key` or
    `?key=` (those come first there)."""
    request = call.request
    route = call.route
    dialect = client_dialect(request) if route.speaks_client_dialect else route.dialect
    if dialect is Dialect.GEMINI:
        key = google_api_key(request)
        if key:
            return key
    return bearer_token(request)


async def unknown_route(call: Call) -> web.StreamResponse:
    """Unknown routes and wrong methods answer with an error body, never HTML."""
    request = call.request
    allowed = await _allowed_methods(request)
    if allowed:
        raise MethodNotAllowedError(
            f"Method {request.method} is not allowed on {request.path}; use {', '.join(allowed)}.",
            allowed=allowed,
        )
    raise RouteNotFoundError(f"Unknown route {request.method} {request.path}.")


UNKNOWN_ROUTE = Route(
    "*",
    UNKNOWN_ROUTE_PATH.replace("}", ":.*}"),
    unknown_route,
    Access.PUBLIC,
    "Any path no route declares",
    Reply("Never: always 404 or 405"),
    errors=NO_ERRORS,
)


async def _allowed_methods(request: web.Request) -> tuple[str, ...]:
    """The methods the routes matching `request`'s path take (the catch-all aside)."""
    methods: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical == UNKNOWN_ROUTE_PATH:
            continue
        _, allowed = await resource.resolve(request)
        methods |= allowed
    return tuple(sorted(methods - {"HEAD"}))
