"""Run a gateway app until SIGINT/SIGTERM, then drain in-flight requests and close pools."""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import shutil
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import log as aiohttp_log
from aiohttp import web

from stellara.config.loader import load_config
from stellara.config.models import StellaraConfig
from stellara.errors import StoreUnavailableError
from stellara.server.app import TOKENS, create_app
from stellara.store.admin import upgrade_database
from stellara.telemetry.metrics import prepare_multiprocess_dir, worker_exited

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 30.0
GC_YOUNG_THRESHOLD = 50_000  # objects allocated between young-generation collections


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
    """Serve `config` on host:port until a stop signal; `on_ready` gets the bound port."""
    app = create_app(config)
    # aiohttp's access log costs ~10 % of throughput; it is opt-in.
    access_log = aiohttp_log.access_logger if config.server.access_log else None
    # aiohttp's own keep-alive default is an hour; the same timer closes a connection whose
    # request line and headers have not all arrived (a slow sender), so it is the config's.
    runner = web.AppRunner(
        app,
        access_log=access_log,
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_GRACE_S,
        keepalive_timeout=config.server.keepalive_timeout_s,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before announcing: a stop may follow at once
        loop.add_signal_handler(sig, stop.set)
    await runner.setup()
    # In the background: start-up stays fast, and no request pays the ~0.2 s tokenizer load.
    models = {target.model for model in config.models for target in model.targets}
    preload = asyncio.create_task(asyncio.to_thread(app[TOKENS].preload, models))
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port, backlog=1024)
    await site.start()
    tune_garbage_collector()
    if on_ready is not None:
        on_ready(_bound_port(runner, port))
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await preload


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


def _bound_port(runner: web.AppRunner, requested: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested


def serve_workers(config_path: Path, *, host: str, port: int, workers: int) -> None:
    """Run `workers` processes sharing one port (SO_REUSEPORT); the kernel spreads connections.

    The schema is migrated here first, so the workers do not race to create it (each still
    checks, and retries in the background if the database is down now)."""
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
    for process in processes:
        process.join()
        if process.pid is not None:
            worker_exited(process.pid)
    shutil.rmtree(metrics_dir, ignore_errors=True)


def _worker_main(config_path: str, host: str, port: int) -> None:
    config = load_config(config_path)
    run_loop(lambda: serve(config, host=host, port=port, reuse_port=True))
