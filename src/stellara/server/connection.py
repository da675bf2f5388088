"""How `stellara serve` runs HTTP connections: aiohttp's own protocol, with a deadline on each
request's head and parser limits that follow `server.max_header_bytes`.

aiohttp bounds how long a connection may sit idle (keep-alive) and the gateway bounds how long
a body may take (`server.body_read_timeout_s`), but nothing bounds the head: a client sending
its request line and headers a byte a second keeps the connection until keep-alive ends it.
`HeadDeadlineHandler` closes it `server.header_read_timeout_s` after the head's first byte.

The hook is aiohttp's protocol factory: `web.Server` makes one `RequestHandler` per
connection, and `GatewayRunner` hands the sites a `web.Server` that makes ours instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from stellara.config.models import ServerConfig

logger = logging.getLogger(__name__)

# Headers per request that aiohttp's parser accepts (its own default): browsers send about 20,
# SDKs fewer; more is a client probing the parser.
MAX_HEADER_FIELDS = 128


class HeadDeadlineHandler(RequestHandler):
    """aiohttp's connection protocol, closing the connection when a request's line and headers
    have not all arrived `head_timeout_s` after their first byte.

    The clock starts when bytes arrive while no body is being received (so they begin a
    head) and stops when aiohttp's parser has made a request of them. Bodies, answers being
    written and idle keep-alive time are not counted.
    """

    __slots__ = ("_head_deadline", "_head_timeout_s", "_latest_body")

    def __init__(self, manager: web.Server, *, head_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout_s = head_timeout_s
        self._head_deadline: asyncio.TimerHandle | None = None
        self._latest_body: StreamReader | None = None

    def data_received(self, data: bytes) -> None:
        heads = self._request_count  # aiohttp counts each head it parses (or fails to)
        is_between_bodies = self._latest_body is None or self._latest_body.is_eof()
        super().data_received(data)
        if self._request_count != heads:
            self._stop_head_clock()
            self._latest_body = self._messages[-1][1] if self._messages else None
        elif data and is_between_bodies and self._head_deadline is None and self._parses_heads():
            self._head_deadline = self._loop.call_later(self._head_timeout_s, self._head_too_slow)

    def _parses_heads(self) -> bool:
        """Whether bytes still go to aiohttp's request parser: not once the connection is
        closing (shutdown drains the requests in flight) or upgraded."""
        return not (self._close or self._force_close or self._upgraded)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_clock()
        super().connection_lost(exc)

    def _stop_head_clock(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        logger.debug("closed a connection whose request head took over %g s", self._head_timeout_s)
        self.force_close()


class HeadDeadlineServer(web.Server):
    """aiohttp's low-level server, making a `HeadDeadlineHandler` per connection."""

    def __init__(self, *args: Any, head_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout_s = head_timeout_s

    def __call__(self) -> RequestHandler:
        return HeadDeadlineHandler(
            self, loop=self._loop, head_timeout_s=self._head_timeout_s, **self._kwargs
        )


class GatewayRunner(web.AppRunner):
    """The app's runner as `stellara serve` runs it: keep-alive and head limits from `settings`,
    and connections whose head must arrive in time.

    The parser refuses (400) a request line or a single header longer than
    `max_header_bytes`, and more than `MAX_HEADER_FIELDS` headers, before the app sees them;
    the app answers 431 to headers over `max_header_bytes` together.
    """

    __slots__ = ("_head_timeout_s",)

    def __init__(self, app: web.Application, settings: ServerConfig, **kwargs: Any) -> None:
        super().__init__(
            app,
            keepalive_timeout=settings.keepalive_timeout_s,
            max_line_size=settings.max_header_bytes,
            max_field_size=settings.max_header_bytes,
            max_headers=MAX_HEADER_FIELDS,
            **kwargs,
        )
        self._head_timeout_s = settings.header_read_timeout_s

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()  # starts the app
        return HeadDeadlineServer(
            made.request_handler,
            request_factory=made.request_factory,
            head_timeout_s=self._head_timeout_s,
            **self._kwargs,
        )
