"""``within``: asyncio.timeout's semantics at a lower per-request cost."""
from __future__ import annotations

import asyncio

import pytest

from plugins.middleware.router.timeout import within


async def test_the_block_raises_timeout_error_when_time_runs_out():
    t0 = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError):
        with within(0.05) as w:
            await asyncio.sleep(5)
    assert w.expired and asyncio.get_running_loop().time() - t0 < 1
    assert asyncio.current_task().cancelling() == 0  # the cancel it used is taken back


async def test_a_block_that_finishes_in_time_leaves_no_timer_behind():
    with within(0.05) as w:
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)  # past the deadline: nothing fires into the task
    assert not w.expired
    with within(None):
        await asyncio.sleep(0.01)


async def test_a_cancel_from_outside_stays_a_cancel():
    started = asyncio.Event()

    async def work():
        with within(5):
            started.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(work())
    await started.wait()
    task.cancel()  # a client that went away
    with pytest.raises(asyncio.CancelledError):
        await task


async def _race(cm_factory, outside_cancel: bool) -> str:
    """The deadline falls due while the loop is busy; with ``outside_cancel`` someone else cancels the
    task in that same stretch, before the timer runs. What leaves the task?"""
    started = asyncio.Event()

    async def work():
        cm = cm_factory()
        if isinstance(cm, within):
            with cm:
                started.set()
                await asyncio.sleep(5)
        else:
            async with cm:
                started.set()
                await asyncio.sleep(5)

    task = asyncio.create_task(work())
    await started.wait()
    import time
    time.sleep(0.03)  # the loop is held: the 10 ms deadline is now due but has not run
    if outside_cancel:
        task.cancel()
    try:
        await task
    except BaseException as exc:  # noqa: BLE001 - the kind is what is compared
        return type(exc).__name__
    return "none"


async def test_an_outside_cancel_racing_the_deadline_is_not_swallowed():
    assert await _race(lambda: within(0.01), outside_cancel=True) == "CancelledError"
    assert await _race(lambda: within(0.01), outside_cancel=False) == "TimeoutError"


async def test_it_matches_asyncio_timeout_on_the_same_races():
    for outside in (False, True):
        assert await _race(lambda: within(0.01), outside) == await _race(lambda: asyncio.timeout(0.01), outside)
