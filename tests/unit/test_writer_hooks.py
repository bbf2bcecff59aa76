"""Completion hooks as the HTTP writer runs them: all of them, in order, exactly once, and to the end
even when the client goes away (aiohttp cancels the handler) while one of them waits."""
from __future__ import annotations

import asyncio

import pytest

from gateway import Reply
from gateway.http.writer import run_hooks_shielded
from gateway.reply import Outcome
from gateway.testing import make_call


def _call():
    return make_call({"model": "m", "messages": [{"role": "user", "content": "x"}]})


async def test_hooks_that_never_wait_all_run_before_it_returns_and_in_order():
    log: list[str] = []
    reply = Reply.json({})
    for name in ("inner", "outer"):
        async def hook(o, name=name):
            log.append(name)
        reply.on_complete(hook)

    async def final(call, o):
        log.append("usage")

    await run_hooks_shielded(reply, Outcome(200, "complete"), final, _call())
    assert log == ["inner", "outer", "usage"]


async def test_hooks_that_wait_run_to_the_end_with_their_results():
    loop = asyncio.get_running_loop()
    log: list[object] = []
    reply = Reply.json({})

    async def waits_on_a_future(o):
        fut = loop.create_future()
        loop.call_later(0.01, fut.set_result, 42)
        log.append(await fut)

    async def yields_a_turn(o):
        await asyncio.sleep(0)
        log.append("after sleep(0)")

    async def fails_after_waiting(o):
        await asyncio.sleep(0.001)
        raise RuntimeError("boom")

    reply.on_complete(waits_on_a_future)
    reply.on_complete(fails_after_waiting)
    reply.on_complete(yields_a_turn)

    async def final(call, o):
        await asyncio.sleep(0.001)
        log.append("usage")

    await run_hooks_shielded(reply, Outcome(200, "complete"), final, _call())
    assert log == [42, "after sleep(0)", "usage"]  # the failing hook did not stop the ones after it


async def test_an_exception_thrown_into_a_waiting_hook_reaches_it():
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    reply = Reply.json({})

    async def hook(o):
        fut = loop.create_future()
        loop.call_later(0.01, fut.set_exception, ValueError("upstream said no"))
        try:
            await fut
        except ValueError as exc:
            seen.append(str(exc))

    reply.on_complete(hook)
    await run_hooks_shielded(reply, Outcome(200, "complete"), None, _call())
    assert seen == ["upstream said no"]


async def test_a_client_that_goes_away_does_not_cut_a_waiting_hook_short():
    finished = asyncio.Event()
    reply = Reply.json({})

    async def slow(o):
        await asyncio.sleep(0.05)
        finished.set()

    reply.on_complete(slow)
    handler = asyncio.ensure_future(run_hooks_shielded(reply, Outcome(499, "client_gone"), None, _call()))
    await asyncio.sleep(0.01)
    handler.cancel()  # what aiohttp does to the handler task on disconnect
    with pytest.raises(asyncio.CancelledError):
        await handler
    assert finished.is_set()  # the hook finished before the cancellation went on
