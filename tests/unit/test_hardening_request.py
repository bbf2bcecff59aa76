"""E1 unit: the container cap counts JSON objects/arrays, not braces inside strings."""
from __future__ import annotations

import time

import orjson
import pytest

from gateway.errors import GatewayError
from gateway.http.request import MAX_CONTAINERS, _check_containers


def test_braces_inside_strings_do_not_count() -> None:
    code = "int main() { return f({[0]}); }\n" * 40_000  # ~1.3 MB of code, 160k braces, all in one string
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": code}]})
    t0 = time.perf_counter()
    _check_containers(bytearray(body))
    assert time.perf_counter() - t0 < 0.5


def test_escaped_quotes_do_not_end_the_string() -> None:
    s = '\\"{[' * 100_000
    _check_containers(bytearray(orjson.dumps({"x": s})))


@pytest.mark.parametrize("n", [MAX_CONTAINERS + 1, 1_000_000])
def test_too_many_containers(n: int) -> None:
    body = b'{"model":"m","messages":[' + b",".join([b"{}"] * n) + b"]}"
    with pytest.raises(GatewayError) as ei:
        _check_containers(bytearray(body))
    assert ei.value.code == "invalid_request"


def test_at_the_cap_is_fine() -> None:
    body = b"[" + b",".join([b"[]"] * (MAX_CONTAINERS - 1)) + b"]"
    _check_containers(bytearray(body))
