"""The route table: every route the gateway serves, declared once in its module's `ROUTES`.

The app registers this table, the boundary authenticates by each route's access, and the
OpenAPI document, the docs' API reference and the authorization-matrix test read it. A new
route is one `Route` in the module of its concern (and a new module, one line here).
"""

from __future__ import annotations

from stellara.server.routes import (
    anthropic,
    cache,
    dashboard,
    docs,
    experiments,
    feedback,
    gemini,
    keys,
    limits,
    metrics,
    models,
    monitoring,
    openai,
    orchestration,
    probes,
    rebuild,
    responses,
    usage,
)
from stellara.server.spec import Route

ROUTES: tuple[Route, ...] = (
    *openai.ROUTES,
    *anthropic.ROUTES,
    *gemini.ROUTES,
    *models.ROUTES,
    *responses.ROUTES,
    *feedback.ROUTES,
    *orchestration.ROUTES,
    *limits.ROUTES,
    *cache.ROUTES,
    *monitoring.ROUTES,
    *keys.ROUTES,
    *usage.ROUTES,
    *experiments.ROUTES,
    *rebuild.ROUTES,
    *metrics.ROUTES,
    *dashboard.ROUTES,
    *probes.ROUTES,
    *docs.ROUTES,
)

__all__ = ["ROUTES"]
