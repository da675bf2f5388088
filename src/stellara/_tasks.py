"""Background tasks: held until done, drained or cancelled at shutdown, stopped in time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterable
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
        while pending := unfinished(self._running):
            await asyncio.gather(*pending, return_exceptions=True)

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


def unfinished(tasks: Iterable[asyncio.Task[None]]) -> list[asyncio.Task[None]]:
    """The tasks not done yet, for a drain loop to wait on.

    A finished task stays in its holder's collection until its done callback runs, in a later
    pass of the loop; and since Python 3.12 a `gather()` of tasks that are all done returns
    without yielding to the loop. So a drain that waited on every held task would spin in
    place, never letting that callback run: wait on the unfinished ones only.
    """
    return [task for task in tasks if not task.done()]
