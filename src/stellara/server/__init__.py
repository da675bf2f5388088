"""The HTTP layer: the only package that knows aiohttp.web."""

from stellara.server.app import create_app

__all__ = ["create_app"]
