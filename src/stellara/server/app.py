"""`create_app(config)`: the aiohttp app that serves one gateway.

The gateway itself is built by `stellara.assembly.build_runtime`; this module only puts HTTP
around it: the declared routes behind the boundary, and the runtime's lifecycle as the app's
start-up and shutdown. Nothing lives at module level: tests build as many apps as they
like in one process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from stellara._clock import Clock
from stellara.assembly import Runtime, build_runtime
from stellara.config.models import StellaraConfig
from stellara.events import EventBus
from stellara.server.boundary import UNKNOWN_ROUTE, RouteHandler, UnknownRouteHandler
from stellara.server.openapi import OPENAPI_DOCUMENT, encoded_openapi
from stellara.server.routes import ROUTES
from stellara.server.spec import Route
from stellara.state.base import StateBackend

RUNTIME = web.AppKey("runtime", Runtime)


def create_app(
    config: StellaraConfig,
    *,
    clock: Clock | None = None,
    events: EventBus | None = None,
    state_backend: StateBackend | None = None,
) -> web.Application:
    """The app serving the gateway `config` describes; `clock`, `events` and `state_backend`
    replace the configured ones (tests). Its parts start with the app and stop with it."""
    runtime = build_runtime(config, clock=clock, events=events, state_backend=state_backend)
    return app_for(runtime)


def app_for(runtime: Runtime, routes: Sequence[Route] = ROUTES) -> web.Application:
    """The app serving `runtime` through `routes`."""
    # aiohttp enforces the body limit itself for bodies without a Content-Length (the boundary
    # answers its error in the route's dialect); the slack keeps it from firing first.
    app = web.Application(client_max_size=runtime.config.server.max_body_bytes + 1)
    app[RUNTIME] = runtime
    app[OPENAPI_DOCUMENT] = encoded_openapi(routes)
    for route in routes:
        app.router.add_route(route.method, route.path, RouteHandler(route, runtime).handle)
    unknown = UnknownRouteHandler(UNKNOWN_ROUTE, runtime)
    app.router.add_route(UNKNOWN_ROUTE.method, UNKNOWN_ROUTE.path, unknown.handle)

    async def running(_: web.Application) -> AsyncIterator[None]:
        async with runtime.running():
            yield

    app.cleanup_ctx.append(running)
    return app
