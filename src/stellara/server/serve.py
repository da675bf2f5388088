"""Run a gateway app until SIGINT/SIGTERM, then drain in-flight requests and close pools."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import platform
import shutil
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import log as aiohttp_log
from aiohttp import web

from stellara._secrets import SecretScrubber
from stellara.assembly.config import load_config
from stellara.config.models import StellaraConfig
from stellara.config.secrets import secret_values
from stellara.errors import StartupError, StellaraError, StoreUnavailableError
from stellara.server.app import RUNTIME, create_app
from stellara.server.connection import GatewayRunner
from stellara.server.logs import RedactingAccessLogger, secrets_kept_out_of_logs
from stellara.store.admin import upgrade_database
from stellara.telemetry.metrics import prepare_multiprocess_dir, worker_exited

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 30.0
LISTEN_BACKLOG = 1024
GC_YOUNG_THRESHOLD = 50_000  # objects allocated between young-generation collections
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's default, kept from moving (`tune_allocator`)
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's <malloc.h>


def run_loop(main: Callable[[], Awaitable[None]]) -> None:
    """Run `main` on uvloop where it is installed (markedly faster), else on asyncio's loop."""
    try:
        import uvloop  # optional accelerator, absent on Windows
    except ImportError:
        asyncio.run(main())  # type: ignore[arg-type]
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())  # type: ignore[arg-type]


async def serve(
    config: StellaraConfig,
    *,
    host: str,
    port: int,
    reuse_port: bool = False,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Serve `config` on host:port until a stop signal; `on_ready` gets the bound port.

    The port is bound first, so a port in use costs nothing; then the gateway's parts start
    (a part that fails unwinds those started before it) and the listener opens. Whatever
    fails raises; nothing is left running. While it serves, no log line carries a secret of
    the config or a credential written into text (`server/logs.py`).
    """
    sockets = listening_sockets(host, port, reuse_port=reuse_port)
    scrub = SecretScrubber(secret_values(config))
    try:
        with secrets_kept_out_of_logs(scrub):
            await _serve_on(config, sockets, on_ready, scrub)
    finally:
        for sock in sockets:
            sock.close()


async def _serve_on(
    config: StellaraConfig,
    sockets: list[socket.socket],
    on_ready: Callable[[int], None] | None,
    scrub: Callable[[str], str],
) -> None:
    app = create_app(config)
    # aiohttp's access log costs ~10 % of throughput; it is opt-in.
    access_log = aiohttp_log.access_logger if config.server.access_log else None
    runner = GatewayRunner(
        app,
        config.server,
        access_log=access_log,
        access_log_class=RedactingAccessLogger.using(scrub),
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_GRACE_S,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before announcing: a stop may follow at once
        loop.add_signal_handler(sig, stop.set)
    await runner.setup()  # starts the gateway's parts; raises (all unwound) if one fails
    try:
        # In the background: start-up stays fast, and no request pays the ~0.2 s tokenizer load.
        models = {target.model for model in config.models for target in model.targets}
        preload = asyncio.create_task(asyncio.to_thread(app[RUNTIME].tokens.preload, models))
        for sock in sockets:
            await web.SockSite(runner, sock, backlog=LISTEN_BACKLOG).start()
        tune_garbage_collector()
        tune_allocator()
        if on_ready is not None:
            on_ready(sockets[0].getsockname()[1])
        await stop.wait()
        await preload
    finally:
        await runner.cleanup()


def listening_sockets(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Bound sockets for every address `host` resolves to (as aiohttp's TCP site would bind),
    or `StartupError` naming the address when one cannot be bound."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc}") from exc
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    for family, kind, protocol, _, address in infos:
        if (family, address) in seen:
            continue
        seen.add((family, address))
        sock = socket.socket(family, kind, protocol)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            sock.listen(LISTEN_BACKLOG)
        except OSError as exc:
            sock.close()
            for bound in sockets:
                bound.close()
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        sockets.append(sock)
        port = sock.getsockname()[1]  # port 0: every address on the port the first one got
    return sockets


def tune_garbage_collector() -> None:
    """Spend less time in the cyclic garbage collector on the request path.

    What start-up built (modules, config, routes, catalogs) lives as long as the process:
    frozen, the collector never walks it again. Each request leaves some cyclic garbage
    (exceptions with tracebacks, futures), so collection stays on, but a young generation
    of 50,000 objects instead of 700 collects every few hundred requests, not every few.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def tune_allocator() -> None:
    """Give large buffers back to the system as soon as they are freed (glibc only).

    glibc serves a block of 128 KiB or more with its own mapping, returned when freed, but
    raises that threshold to the size of every such block freed (up to 32 MiB): after one
    multi-megabyte body, the next ones come from the heap, which fragments and keeps them.
    A burst of 3.5 MB bodies left the process 20-30 % larger for good. Setting the
    threshold pins it, as `MALLOC_MMAP_THRESHOLD_` would; a request's small objects are
    not affected (Python allocates them itself).
    """
    if platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL(None)
    libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def serve_workers(config_path: Path, *, host: str, port: int, workers: int) -> int:
    """Run `workers` processes sharing one port (SO_REUSEPORT); the kernel spreads connections.
    Returns the exit status: 0 after a clean stop, 1 when a worker failed (the others are then
    stopped too).

    The port is tried and the schema migrated here first, so a port in use fails at once and
    the workers do not race to create the schema (each still checks, and retries in the
    background if the database is down now)."""
    for sock in listening_sockets(host, port, reuse_port=True):
        sock.close()
    try:
        asyncio.run(upgrade_database(load_config(config_path).usage_store.url))
    except StoreUnavailableError as exc:
        logger.warning("%s; the workers will retry", exc.message)
    metrics_dir = prepare_multiprocess_dir()  # before any worker starts: they inherit it
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker_main, args=(str(config_path), host, port), daemon=False)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    print(f"Stellara listening on http://{host}:{port} with {workers} workers", flush=True)

    def forward(signum: int, _frame: object) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    running = list(processes)
    while running:
        multiprocessing.connection.wait([process.sentinel for process in running])
        for process in [p for p in running if not p.is_alive()]:
            running.remove(process)
            if process.pid is not None:
                worker_exited(process.pid)
            if process.exitcode and status == 0:
                status = 1
                forward(signal.SIGTERM, None)  # one worker failed: stop the deployment
    shutil.rmtree(metrics_dir, ignore_errors=True)
    return status


def _worker_main(config_path: str, host: str, port: int) -> None:
    config = load_config(config_path)
    try:
        run_loop(lambda: serve(config, host=host, port=port, reuse_port=True))
    except StellaraError as exc:
        print(f"stellara: {exc.message}", file=sys.stderr, flush=True)
        sys.exit(1)
