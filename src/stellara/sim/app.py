"""The simulator's HTTP application: model routes, fault injection, and control routes for tests.

Control routes (not part of any provider's API):

* ``POST /_sim/faults`` with ``{"faults": [...]}`` replaces the fault rules; ``GET`` lists them
  with their remaining uses; ``DELETE`` removes them.
* ``GET /_sim/requests`` returns the last 200 model requests, oldest first, as
  ``{"requests": [{"method", "path", "query", "headers", "body"}]}``; header names are
  lower-cased and ``body`` is the parsed JSON, or ``null`` when the body was not JSON.
* ``POST /_sim/reset`` removes the fault rules and the recorded requests.

Every other path is a model request, answered in the wire format of the first dialect that
serves its path (OpenAI's for any path no other dialect claims).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import orjson
from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

from stellara.sim.anthropic import AnthropicSim
from stellara.sim.config import SimConfig, parse_faults
from stellara.sim.faults import FaultBook, StreamCut, enact
from stellara.sim.google import GoogleSim
from stellara.sim.openai import OpenAISim
from stellara.sim.responses import OpenAIResponsesSim

RECORDED_REQUESTS = 200
"""How many model requests ``GET /_sim/requests`` keeps."""

_SHUTDOWN_TIMEOUT_S = 2.0


class SimDialect(Protocol):
    """A provider wire format the simulator can speak."""

    def serves(self, path: str) -> bool:
        """Whether requests to ``path`` are in this format."""
        ...

    def peek(self, path: str, raw: bytes) -> tuple[str | None, bool]:
        """Return ``(model, is_stream)`` of a request, or ``(None, False)`` if unreadable."""
        ...

    def error_body(self, status: int) -> bytes:
        """Return this format's default error body for ``status``."""
        ...

    async def handle(
        self, request: web.Request, raw: bytes, *, cut: StreamCut | None
    ) -> web.StreamResponse:
        """Answer a request; a stream breaks off after ``cut.after_chunks`` chunks when set."""
        ...


class _Recorded(NamedTuple):
    # Raw parts only: turning them into JSON-ready dicts waits until a test asks.
    method: str
    url: URL
    headers: CIMultiDictProxy[str]
    body: bytes

    def to_json(self) -> dict[str, Any]:
        try:
            body = orjson.loads(self.body) if self.body else None
        except orjson.JSONDecodeError:
            body = None
        return {
            "method": self.method,
            "path": self.url.path,
            "query": dict(self.url.query),
            "headers": {name.lower(): value for name, value in self.headers.items()},
            "body": body,
        }


class _Simulator:
    """Per-app state and the catch-all model-request handler."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.faults = FaultBook(config.faults)
        self.recorded: deque[_Recorded] = deque(maxlen=RECORDED_REQUESTS)
        # First match wins; the OpenAI format, last, answers every other path.
        self.dialects: tuple[SimDialect, ...] = (
            AnthropicSim(config),
            GoogleSim(config),
            OpenAIResponsesSim(config),
            OpenAISim(config),
        )
        self.stopping = asyncio.Event()
        self._latency_s = config.latency_ms / 1000

    async def serve(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.recorded.append(_Recorded(request.method, request.rel_url, request.headers, raw))
        path = request.path
        dialect = next(d for d in self.dialects if d.serves(path))
        cut = None
        if self.faults:
            model, is_stream = dialect.peek(path, raw)
            rule = self.faults.match(request.path, model)
            if rule is not None:
                response = await enact(
                    rule,
                    request,
                    is_stream=is_stream,
                    error_body=dialect.error_body,
                    stopping=self.stopping,
                )
                if response is not None:
                    return response
                cut = StreamCut.of(rule, self.stopping)
        if self._latency_s > 0:
            await asyncio.sleep(self._latency_s)
        return await dialect.handle(request, raw, cut=cut)

    async def on_shutdown(self, app: web.Application) -> None:
        self.stopping.set()


_SIMULATOR = web.AppKey("simulator", _Simulator)


def create_sim_app(config: SimConfig | None = None) -> web.Application:
    """Build a simulator application; each call gets its own faults and request log.

    Use this to mount the simulator in an existing aiohttp server or test client; use
    :func:`start_simulator` to serve it on a port.
    """
    simulator = _Simulator(config or SimConfig())
    app = web.Application()
    app[_SIMULATOR] = simulator
    app.on_shutdown.append(simulator.on_shutdown)
    app.router.add_post("/_sim/faults", _set_faults)
    app.router.add_get("/_sim/faults", _get_faults)
    app.router.add_delete("/_sim/faults", _clear_faults)
    app.router.add_get("/_sim/requests", _get_requests)
    app.router.add_post("/_sim/reset", _reset)
    app.router.add_route("*", "/{tail:.*}", simulator.serve)
    return app


async def _set_faults(request: web.Request) -> web.Response:
    try:
        rules = parse_faults(orjson.loads(await request.read()))
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError too
        return web.json_response({"error": {"message": str(exc)}}, status=400)
    request.app[_SIMULATOR].faults.replace(rules)
    return _json({"faults": request.app[_SIMULATOR].faults.describe()})


async def _get_faults(request: web.Request) -> web.Response:
    return _json({"faults": request.app[_SIMULATOR].faults.describe()})


async def _clear_faults(request: web.Request) -> web.Response:
    request.app[_SIMULATOR].faults.clear()
    return _json({"faults": []})


async def _get_requests(request: web.Request) -> web.Response:
    recorded = request.app[_SIMULATOR].recorded
    return _json({"requests": [entry.to_json() for entry in recorded]})


async def _reset(request: web.Request) -> web.Response:
    simulator = request.app[_SIMULATOR]
    simulator.faults.clear()
    simulator.recorded.clear()
    return _json({"reset": True})


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


class RunningSimulator:
    """A simulator serving on a port of the current event loop; close it when done.

    Also an async context manager: ``async with await start_simulator() as sim: ...``.

    Attributes:
        url: Base URL without a trailing slash, e.g. ``"http://127.0.0.1:54321"``.
        port: The port it listens on.
        app: The aiohttp application.
    """

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self.port = port
        self.url = f"http://{host}:{port}"
        self.app = runner.app

    async def close(self) -> None:
        """Stop serving; requests held by ``timeout`` faults are released and dropped."""
        await self._runner.cleanup()

    async def __aenter__(self) -> RunningSimulator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def start_simulator(
    config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> RunningSimulator:
    """Serve a new simulator on the running event loop.

    Args:
        config: Simulator settings; defaults to :class:`SimConfig` defaults.
        host: Address to bind.
        port: Port to bind; 0 picks a free one (read it from the result).
    """
    runner = _runner(create_sim_app(config))
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    return RunningSimulator(runner, host, bound_port)


def run_simulator(config: SimConfig, host: str = "127.0.0.1", port: int = 9100) -> None:
    """Serve a simulator until SIGINT or SIGTERM; for the ``simulate`` command.

    Blocks the calling thread. Runs on uvloop when it is installed.
    """
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve_until_signalled(config, host, port))


async def _serve_until_signalled(config: SimConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows has no loop signal handlers
            loop.add_signal_handler(signum, stop.set)
    simulator = await start_simulator(config, host, port)
    print(f"stellara simulator listening on {simulator.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await simulator.close()


def _runner(app: web.Application) -> web.AppRunner:
    # handler_cancellation: a client that gives up must free a request held by a fault.
    return web.AppRunner(
        app,
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # optional: no Windows wheels
    except ImportError:
        return None
    return uvloop.new_event_loop
