"""Start-up and shutdown as a stack: parts start in the order they were added and stop in
reverse, whatever happens in between.

A part that fails to start unwinds every part started before it, so a gateway that cannot
start leaves nothing running (no SQLite thread, no Redis listener, no open pool). A part that
fails to stop is logged and the others still stop: shutdown never ends half-way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

Step = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Stage:
    """One part's start and stop; either may be absent."""

    name: str
    start: Step | None
    stop: Step | None


class Lifecycle:
    """The ordered stages of one gateway. Add a part right after building it, with what it
    needs started before it already added: the order of `add` calls is the start order."""

    def __init__(self) -> None:
        self._stages: list[Stage] = []

    def add(self, name: str, *, start: Step | None = None, stop: Step | None = None) -> None:
        self._stages.append(Stage(name, start, stop))

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The stages in start order (for the architecture docs and tests)."""
        return tuple(self._stages)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Start every part, yield, then stop them in reverse. If a start raises, the parts
        already started are stopped and the error propagates."""
        async with contextlib.AsyncExitStack() as stack:
            for stage in self._stages:
                if stage.start is not None:
                    await stage.start()
                if stage.stop is not None:
                    stack.push_async_callback(_stop, stage)
            yield


async def _stop(stage: Stage) -> None:
    assert stage.stop is not None
    try:
        await stage.stop()
    except Exception:  # one part's failure must not keep the others running
        logger.exception("stopping %s failed", stage.name)
