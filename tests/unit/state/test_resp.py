"""The lean pipelined Redis client (gateway/state/resp.py) against a real redis-server."""
from __future__ import annotations

import asyncio
import time

import pytest

from gateway.state.redis import RedisState
from gateway.state.resp import ReplyError, RespClient, encode

pytestmark = pytest.mark.redis


def client(url: str, timeout: float = 1.0) -> RespClient:
    return RespClient(url, timeout=timeout, connect_timeout=1.0)


async def test_concurrent_calls_on_one_connection_each_get_their_own_reply(redis_server) -> None:
    c = client(redis_server.url)
    try:
        replies = await asyncio.gather(*(c.call("ECHO", f"v{i}") for i in range(2000)))
        assert replies == [f"v{i}".encode() for i in range(2000)]
        counts = await asyncio.gather(*(c.call("INCRBY", "n", 2) for _ in range(500)))
        assert sorted(counts) == list(range(2, 1001, 2))
        assert await c.call("GET", "n") == b"1000"
        assert redis_server.command("CLIENT", "LIST").count(b"cmd=") == 2  # ours + this CLIENT LIST
    finally:
        await c.close()


async def test_an_error_reply_raises_and_the_connection_keeps_working(redis_server) -> None:
    c = client(redis_server.url)
    try:
        await c.call("SET", "s", "text")
        with pytest.raises(ReplyError, match="WRONGTYPE"):
            await c.call("LPUSH", "s", "x")
        with pytest.raises(ReplyError, match="unknown command"):
            await c.call("NOSUCHCOMMAND")
        assert await c.call("GET", "s") == b"text"
        assert await c.call("HMGET", "nothing", "a", "b") == [None, None]
        assert await c.call("EVAL", "return {1, 'two', {3}}", 0) == [1, b"two", [3]]
    finally:
        await c.close()


async def test_a_stalled_redis_times_out_the_call_fails_the_others_and_recovers(redis_server) -> None:
    c = client(redis_server.url, timeout=0.1)
    try:
        assert await c.call("PING") == b"PONG"
        redis_server.pause(600)
        t0 = time.perf_counter()
        first = asyncio.ensure_future(c.call("PING"))
        await asyncio.sleep(0.05)
        later = asyncio.ensure_future(c.call("PING"))  # queued behind the first on the same connection
        with pytest.raises(TimeoutError):
            await first
        assert 0.09 <= time.perf_counter() - t0 < 0.3
        with pytest.raises(ConnectionError):  # failed with the connection, before its own timeout
            await later
        assert time.perf_counter() - t0 < 0.15
        await asyncio.sleep(0.6)
        assert await c.call("PING") == b"PONG"  # a new connection
    finally:
        await c.close()


async def test_a_restarted_redis_fails_the_call_in_flight_then_reconnects(redis_server) -> None:
    c = client(redis_server.url)
    try:
        await c.call("SET", "k", "1")
        redis_server.kill()
        with pytest.raises(ConnectionError):
            await c.call("GET", "k")
        with pytest.raises(ConnectionRefusedError):
            await c.call("GET", "k")
        redis_server.start()
        assert await c.call("GET", "k") is None  # a fresh Redis (no persistence)
    finally:
        await c.close()


async def test_password_and_database_from_the_url(redis_server) -> None:
    redis_server.command("CONFIG", "SET", "requirepass", "s3cr:t@x")
    base = redis_server.url.rsplit("/", 1)[0].replace("redis://", "redis://:s3cr%3At%40x@")
    db0, db3 = client(base + "/0"), client(base + "/3")
    try:
        await db3.call("SET", "where", "three")
        assert await db3.call("GET", "where") == b"three"
        assert await db0.call("GET", "where") is None
        bad = client(redis_server.url.replace("redis://", "redis://:wrong@"))
        with pytest.raises(ConnectionError, match="refused AUTH"):
            await bad.call("PING")
        with pytest.raises(ReplyError, match="NOAUTH"):
            await client(redis_server.url).call("PING")
    finally:
        await db0.close()
        await db3.close()


async def test_a_script_flushed_from_redis_is_loaded_again(redis_server) -> None:
    from gateway.state.base import RateLimit

    state = RedisState(redis_server.url, timeout=1.0)
    try:
        assert (await state.rate_admit("r1", [RateLimit("p", 10, 60_000, 1, 0)])).admitted
        redis_server.command("SCRIPT", "FLUSH")
        assert (await state.rate_admit("r2", [RateLimit("p", 10, 60_000, 1, 0)])).admitted
        assert redis_server.command("ZCARD", "wl:rl:p") == b":2\r\n"
        assert not state.failures
    finally:
        await state.close()


def test_urls_and_arguments() -> None:
    c = RespClient("unix://:pw@/run/redis.sock?db=2", timeout=0.05, connect_timeout=0.5)
    assert (c._path, c._password, c._db) == ("/run/redis.sock", "pw", 2)
    c = RespClient("rediss://user:p%40ss@cache.example:6390/4?ssl_cert_reqs=none", timeout=0.05, connect_timeout=0.5)
    assert (c._host, c._port, c._user, c._password, c._db, c._ssl is not None) == ("cache.example", 6390, "user", "p@ss", 4, True)
    assert RespClient("redis://localhost", timeout=0.05, connect_timeout=0.5)._port == 6379
    for bad in ("http://x", "redis://h/notanumber"):
        with pytest.raises(ValueError):
            RespClient(bad, timeout=0.05, connect_timeout=0.5)
    assert encode(("SET", b"k", 12, 1.5)) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$3\r\n1.5\r\n"
    for bad_arg in (None, True, ["x"]):
        with pytest.raises(TypeError):
            encode(("SET", bad_arg))


async def test_callers_arriving_during_a_hung_connect_share_one_attempt() -> None:
    """A server that accepts but never answers AUTH: 50 concurrent calls all fail after one connect_timeout."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    c = RespClient(f"redis://:pw@127.0.0.1:{port}/0", timeout=0.05, connect_timeout=0.3)
    try:
        t0 = time.perf_counter()
        got = await asyncio.gather(*(c.call("PING") for _ in range(50)), return_exceptions=True)
        elapsed = time.perf_counter() - t0
        assert all(isinstance(e, TimeoutError) for e in got), got[:3]
        assert 0.25 < elapsed < 0.6, elapsed
    finally:
        server.close()
        await c.close()
