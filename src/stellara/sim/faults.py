"""Fault injection: rules that make a simulator misbehave the way real providers do.

A :class:`FaultRule` says *what* goes wrong and for which requests; a :class:`FaultBook` holds the
live rules of one simulator and counts down the ones limited by ``times``; :func:`enact` performs a
fault on an aiohttp request. Error bodies are left to the wire format, which passes them in.

Faults are applied before authentication and before the configured latency, as a network or
load-balancer failure would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable, Iterable
from typing import Any, Literal

import msgspec
import orjson
from aiohttp import web

FaultKind = Literal[
    "status", "timeout", "reset", "malformed", "cut_stream", "stall", "wrong_content_type", "slow"
]

TIMEOUT_DEFAULT_S = 3600.0
"""How long a ``timeout`` or ``stall`` fault without ``delay_ms`` holds the request: longer than
any client."""

# Deliberately truncated JSON: parsers must fail on it, not read a partial object.
_MALFORMED_JSON = b'{"id": "sim-malformed", "choices": [{"index": 0, "message": {"content": "'
_MALFORMED_SSE = b"data: " + _MALFORMED_JSON + b"\n\ndata: [DONE]\n\n"
# What a misconfigured load balancer or captive proxy answers in place of the API.
_HTML_PAGE = b"<html><head><title>Service</title></head><body><h1>It works!</h1></body></html>\n"
# The start of a JSON answer whose declared length is never reached.
_STALLED_JSON = b'{"id": "sim-stalled", "object": "chat.completion", "choices": ['
_STALLED_JSON_LENGTH = 4096


class FaultRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One way for the simulator to fail, and which requests it applies to.

    Rules are matched in order; the first live rule whose ``model`` and ``path`` match a request
    is applied. Decode rules from JSON or YAML data with ``msgspec.convert(data, FaultRule)``.

    Attributes:
        kind: What goes wrong:

            * ``status``: answer ``status`` with ``body`` (or the format's error body for that
              status) and a ``Retry-After`` header when ``retry_after_s`` is set.
            * ``timeout``: hold the request for ``delay_ms`` (default one hour), then close the
              connection without answering.
            * ``reset``: close the TCP connection at once (RST) without any response.
            * ``malformed``: answer 200 with a body that is not valid JSON (for a stream request,
              an SSE event whose data is not JSON).
            * ``cut_stream``: stream ``after_chunks`` content chunks, then close the connection
              without a finish reason or ``[DONE]``; a non-stream request is reset instead.
            * ``stall``: stream ``after_chunks`` content chunks (a non-stream request: the
              headers and the start of the body), then send nothing more for ``delay_ms``
              (default one hour) with the connection open, then close it.
            * ``wrong_content_type``: answer 200 with an HTML page, as a misconfigured proxy in
              front of the API would.
            * ``slow``: wait ``delay_ms``, then answer normally.
        model: Only requests for this model; ``None`` matches any.
        path: Only requests whose URL path ends with this, e.g. ``"/chat/completions"``.
        status: HTTP status for ``status`` faults.
        body: JSON body for ``status`` faults, replacing the format's default error body.
        retry_after_s: ``Retry-After`` value for ``status`` faults.
        delay_ms: Delay for ``slow``, ``timeout`` and ``stall`` faults.
        after_chunks: Content chunks sent before a ``cut_stream`` or ``stall`` fault.
        times: Apply the rule this many times, then it is spent; ``None`` is forever.
    """

    kind: FaultKind
    model: str | None = None
    path: str | None = None
    status: int = 500
    body: dict[str, Any] | None = None
    retry_after_s: float | None = None
    delay_ms: float = 0.0
    after_chunks: int = 1
    times: int | None = None

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be between 100 and 599, got {self.status}")
        if self.retry_after_s is not None and self.retry_after_s < 0:
            raise ValueError("retry_after_s must not be negative")
        if self.delay_ms < 0:
            raise ValueError("delay_ms must not be negative")
        if self.after_chunks < 0:
            raise ValueError("after_chunks must not be negative")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1 (or null for forever)")


class _LiveRule:
    __slots__ = ("remaining", "rule")

    def __init__(self, rule: FaultRule) -> None:
        self.rule = rule
        self.remaining = rule.times


class FaultBook:
    """The fault rules of one simulator, with the uses left of each.

    Rules themselves are immutable; the countdown for ``times`` lives here, so one
    :class:`~stellara.sim.config.SimConfig` can seed many simulators.
    """

    def __init__(self, rules: Iterable[FaultRule] = ()) -> None:
        self._live: list[_LiveRule] = []
        self.replace(rules)

    def __bool__(self) -> bool:
        return bool(self._live)

    def replace(self, rules: Iterable[FaultRule]) -> None:
        """Replace every rule, resetting the ``times`` counts."""
        self._live = [_LiveRule(rule) for rule in rules]

    def clear(self) -> None:
        """Remove every rule."""
        self._live = []

    def match(self, path: str, model: str | None) -> FaultRule | None:
        """Return the first live rule for this request and use it up once, or ``None``."""
        for live in self._live:
            if live.remaining == 0:
                continue
            rule = live.rule
            if rule.model is not None and rule.model != model:
                continue
            if rule.path is not None and not path.endswith(rule.path):
                continue
            if live.remaining is not None:
                live.remaining -= 1
            return rule
        return None

    def describe(self) -> list[dict[str, Any]]:
        """Return the rules as JSON-ready dicts, each with its ``remaining`` uses."""
        return [
            {**msgspec.to_builtins(live.rule), "remaining": live.remaining} for live in self._live
        ]


class StreamCut:
    """Where a stream breaks off, and how: closed at once, or after a silent stall."""

    __slots__ = ("_stall_s", "_stopping", "after_chunks")

    def __init__(self, after_chunks: int, *, stall_s: float, stopping: asyncio.Event) -> None:
        self.after_chunks = after_chunks
        self._stall_s = stall_s
        self._stopping = stopping

    @classmethod
    def of(cls, rule: FaultRule, stopping: asyncio.Event) -> StreamCut | None:
        """The cut a ``cut_stream`` or ``stall`` rule makes in a stream, else ``None``."""
        if rule.kind == "cut_stream":
            return cls(rule.after_chunks, stall_s=0.0, stopping=stopping)
        if rule.kind == "stall":
            return cls(rule.after_chunks, stall_s=_hold_s(rule), stopping=stopping)
        return None

    async def break_off(self, request: web.BaseRequest) -> None:
        """Stall if asked to, then close: FIN rather than RST, so what was sent arrives."""
        if self._stall_s > 0:
            await _hold(self._stall_s, self._stopping)
        drop_connection(request, is_reset=False)


async def enact(
    rule: FaultRule,
    request: web.Request,
    *,
    is_stream: bool,
    error_body: Callable[[int], bytes],
    stopping: asyncio.Event,
) -> web.StreamResponse | None:
    """Perform ``rule`` on ``request``.

    Args:
        rule: The fault to perform.
        request: The request being answered.
        is_stream: Whether the client asked for a stream.
        error_body: The wire format's default error body for a status code.
        stopping: Set when the simulator shuts down, to release held ``timeout`` requests.

    Returns:
        The response to send (possibly on a connection already closed), or ``None`` when the
        request should be answered normally afterwards: ``slow`` faults, and ``cut_stream`` and
        ``stall`` faults on stream requests, whose cut the stream writer performs.
    """
    kind = rule.kind
    if kind == "status":
        headers = {}
        if rule.retry_after_s is not None:
            headers["Retry-After"] = _format_seconds(rule.retry_after_s)
        body = orjson.dumps(rule.body) if rule.body is not None else error_body(rule.status)
        return web.Response(
            status=rule.status, body=body, headers=headers, content_type="application/json"
        )
    if kind == "slow":
        await asyncio.sleep(rule.delay_ms / 1000)
        return None
    if kind in ("cut_stream", "stall") and is_stream:
        return None
    if kind == "wrong_content_type":
        return web.Response(body=_HTML_PAGE, content_type="text/html")
    if kind == "stall":
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = _STALLED_JSON_LENGTH
        await response.prepare(request)
        await response.write(_STALLED_JSON)
        await _hold(_hold_s(rule), stopping)
        drop_connection(request, is_reset=False)
        return response
    if kind == "malformed":
        if is_stream:
            return web.Response(body=_MALFORMED_SSE, content_type="text/event-stream")
        return web.Response(body=_MALFORMED_JSON, content_type="application/json")
    if kind == "timeout":
        await _hold(_hold_s(rule), stopping)
        drop_connection(request, is_reset=False)
    else:
        drop_connection(request, is_reset=True)
    # Never sent: the connection is gone, and aiohttp discards a response it cannot write.
    return web.Response(status=204)


def drop_connection(request: web.BaseRequest, *, is_reset: bool) -> None:
    """Close the request's connection without completing the response.

    Args:
        request: The request whose connection to close.
        is_reset: Send a TCP RST (``SO_LINGER`` 0) instead of an orderly FIN, discarding
            anything not yet sent.
    """
    transport = request.transport
    if transport is None:
        return
    if is_reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


def _hold_s(rule: FaultRule) -> float:
    return rule.delay_ms / 1000 if rule.delay_ms > 0 else TIMEOUT_DEFAULT_S


async def _hold(seconds: float, stopping: asyncio.Event) -> None:
    # Released early when the simulator stops, so a shutdown never waits an hour.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


def _format_seconds(seconds: float) -> str:
    # Whole seconds as the HTTP spec writes them; fractions kept for sub-second tests.
    return str(int(seconds)) if seconds == int(seconds) else f"{seconds:g}"
