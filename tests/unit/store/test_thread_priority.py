"""The store's database thread runs at a lower CPU priority than the event loop (gateway/store/base.py)."""
from __future__ import annotations

import os
import sys
import threading

import pytest

from gateway.store.base import Store, thread_nice_from_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")


async def _nice_of_db_thread(store: Store) -> int:
    return await store.db._execute(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))


async def test_the_database_thread_is_niced_and_the_loop_is_not(tmp_path, monkeypatch):
    monkeypatch.delenv("WATCHLLM_STORE_THREAD_NICE", raising=False)
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    store = await Store(f"sqlite:///{tmp_path / 'w.db'}").open()
    try:
        assert store.thread_nice == 10
        assert await _nice_of_db_thread(store) == min(19, base + 10)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the loop's own thread
    finally:
        await store.close()


async def test_zero_turns_it_off(tmp_path, monkeypatch):
    monkeypatch.setenv("WATCHLLM_STORE_THREAD_NICE", "0")
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    store = await Store(f"sqlite:///{tmp_path / 'w.db'}").open()
    try:
        assert store.thread_nice == 0 and await _nice_of_db_thread(store) == base
    finally:
        await store.close()


@pytest.mark.parametrize("raw", ["-1", "20", "high"])
def test_bad_values_are_refused_with_the_variable_named(raw):
    with pytest.raises(ValueError, match="WATCHLLM_STORE_THREAD_NICE"):
        thread_nice_from_env({"WATCHLLM_STORE_THREAD_NICE": raw})
