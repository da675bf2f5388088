"""Background tasks: held until done, drained or cancelled at shutdown, stopped in time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


class BackgroundTasks:
    """Work that runs after the code that started it returned (a settle after the answer, a
    broadcast), held here so that it is never collected half-way and can be awaited or
    cancelled when the gateway stops."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._running)

    def run(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` on the running loop; without one (nothing can be running), drop it."""
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:
            work.close()
            return
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def drain(self) -> None:
        """Wait until every task is done, including those started meanwhile."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def cancel(self) -> None:
        """Cancel every task and wait for them to stop."""
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def finish_within(task: asyncio.Task[None], timeout_s: float) -> None:
    """Let `task` finish for at most `timeout_s`, then cancel it and wait for it to stop."""
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout_s)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
