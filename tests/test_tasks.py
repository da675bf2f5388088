"""`BackgroundTasks`: held until done, drained at shutdown, cancelled when it must stop."""

from __future__ import annotations

import asyncio

import pytest

from stellara._tasks import BackgroundTasks


async def _nothing() -> None:
    return None


@pytest.mark.timeout(5)  # the bug this guards against spun without yielding: no loop timer fires
async def test_drain_returns_while_a_finished_task_is_still_held() -> None:
    background = BackgroundTasks()
    background.run(_nothing())
    # The task runs and finishes in the loop's next pass; the callback that lets go of it runs
    # in the pass after, so drain starts while a finished task is still held. On 3.12+ a
    # gather() of finished tasks completes without yielding to the loop: a drain that waited
    # on every held task spun there forever, never letting that callback run.
    await asyncio.sleep(0)
    await background.drain()
    await asyncio.sleep(0)
    assert len(background) == 0


async def test_drain_waits_for_tasks_started_while_draining() -> None:
    background = BackgroundTasks()
    finished: list[str] = []
    gate = asyncio.Event()

    async def second() -> None:
        finished.append("second")

    async def first() -> None:
        await gate.wait()
        background.run(second())
        finished.append("first")

    background.run(first())
    draining = asyncio.ensure_future(background.drain())
    await asyncio.sleep(0)
    assert not draining.done()
    gate.set()
    await asyncio.wait_for(draining, 1.0)
    assert finished == ["first", "second"]


async def test_cancel_stops_every_task() -> None:
    background = BackgroundTasks()
    never = asyncio.Event()

    async def wait_forever() -> None:
        await never.wait()

    background.run(wait_forever())
    await asyncio.sleep(0)
    await asyncio.wait_for(background.cancel(), 1.0)
    await asyncio.sleep(0)
    assert len(background) == 0
