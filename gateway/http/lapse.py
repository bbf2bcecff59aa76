"""A connection deadline that costs one timer however often it is pushed back (the lean front's timers)."""
from __future__ import annotations

import asyncio
from typing import Callable

__all__ = ["Lapse"]


class Lapse:
    """Runs ``expire`` once ``timeout`` seconds pass after the last ``touch``, if ``live()`` still holds.

    ``touch`` only moves the start; the one pending timer, when it fires early, re-arms itself for what
    is left (aiohttp's keep-alive timer works the same way). ``clear`` stops the clock until the next
    ``touch``; ``cancel`` drops the timer too. A ``timeout`` of 0 or less disables it.
    """

    __slots__ = ("_loop", "timeout", "_live", "_expire", "since", "_handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, live: Callable[[], bool], expire: Callable[[], None]) -> None:
        self._loop, self.timeout, self._live, self._expire = loop, timeout, live, expire
        self.since: float | None = None
        self._handle: asyncio.TimerHandle | None = None

    def touch(self) -> None:
        if self.timeout <= 0:
            return
        self.since = self._loop.time()
        if self._handle is None:
            self._handle = self._loop.call_at(self.since + self.timeout, self._fire)

    def clear(self) -> None:
        self.since = None

    def cancel(self) -> None:
        self.since = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        since = self.since
        if since is None or not self._live():
            return
        due = since + self.timeout
        if self._loop.time() >= due:
            self._expire()
        else:
            self._handle = self._loop.call_at(due, self._fire)
