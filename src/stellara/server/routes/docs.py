"""The API's own description (`GET /openapi.json`) and a page that renders it (`GET /docs`)."""

from __future__ import annotations

import functools
from importlib import resources

from aiohttp import web

from stellara.server.openapi import OPENAPI_DOCUMENT
from stellara.server.spec import OBJECT, Access, Call, Reply, Route


@functools.cache
def _page() -> bytes:
    return resources.files("stellara.server").joinpath("docs.html").read_bytes()


async def openapi_json(call: Call) -> web.StreamResponse:
    return web.Response(body=call.request.app[OPENAPI_DOCUMENT], content_type="application/json")


async def docs(call: Call) -> web.StreamResponse:
    return web.Response(body=_page(), content_type="text/html", charset="utf-8")


ROUTES = (
    Route(
        "GET",
        "/openapi.json",
        openapi_json,
        Access.PUBLIC,
        "This document",
        Reply("OpenAPI 3.1", OBJECT),
    ),
    Route(
        "GET",
        "/docs",
        docs,
        Access.PUBLIC,
        "This document as a web page",
        Reply("HTML", media="text/html"),
    ),
)
