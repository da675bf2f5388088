"""Stopping background tasks within a deadline."""

from __future__ import annotations

import asyncio
import contextlib


async def finish_within(task: asyncio.Task[None], timeout_s: float) -> None:
    """Let `task` finish for at most `timeout_s`, then cancel it and wait for it to stop."""
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout_s)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
