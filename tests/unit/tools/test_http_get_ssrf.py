"""http_get's SSRF guard: the bad targets it refuses, and the hops it re-checks.

No real network: names resolve through an injected resolver, and the only
connection made is to a loopback test server reached through the pinned resolver.
"""
from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from gateway.testing import make_call, make_services
from plugins.tools.http_get import HttpGet
from plugins.tools.ssrf import BlockedTarget, check_url, ip_is_public, resolve_public

ALLOW = ["example.com", "*.example.org", "evil.test", "rebind.test", "mixed.test", "v6.test"]

DNS = {
    "example.com": ["93.184.216.34"],
    "evil.test": ["10.0.0.7"],
    "rebind.test": ["127.0.0.1"],
    "mixed.test": ["93.184.216.34", "192.168.1.1"],  # one bad answer is enough to refuse
    "v6.test": ["fd00::1"],
    "meta.example.org": ["169.254.169.254"],
    "cgnat.example.org": ["100.64.1.1"],
    "mapped.example.org": ["::ffff:10.1.2.3"],
}


async def fake_resolver(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise OSError("NXDOMAIN")
    return DNS[host]


BAD_URLS = [
    "http://127.0.0.1/", "http://localhost/", "http://[::1]/", "http://0.0.0.0/", "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/", "http://172.16.5.4/", "http://192.168.0.1/", "http://100.64.0.1/", "http://[fd00::1]/",
    "http://[fe80::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:169.254.169.254]/", "http://[64:ff9b::a00:1]/",
    "http://[2002:7f00:1::]/", "http://2130706433/", "http://017700000001/", "http://0x7f000001/", "http://0x7f.1/",
    "http://0177.0.0.1/", "http://127.1/", "http://[fd00:ec2::254]/", "http://100.100.100.200/", "http://224.0.0.1/",
    "http://user:pw@example.com/", "http://example.com@127.0.0.1/", "file:///etc/passwd", "gopher://example.com/",
    "ftp://example.com/", "http://example.com:22/", "http://not-allowed.com/", "http://example.org/",  # apex not in *.example.org
    "http://evil.test/", "http://rebind.test/", "http://mixed.test/", "http://v6.test/", "http://meta.example.org/",
    "http://cgnat.example.org/", "http://mapped.example.org/", "http:///nohost", "http://exa%6dple.com/",
]


@pytest.mark.parametrize("url", BAD_URLS)
async def test_http_get_refuses_bad_target(url):
    fetched: list[str] = []
    tool = HttpGet(HttpGet.Config(allow_hosts=ALLOW + ["127.0.0.1", "localhost", "0.0.0.0"]), make_services(), resolver=fake_resolver)

    async def never(url, host, ip):  # pragma: no cover - reaching it is the failure
        fetched.append(url)
        return 200, {}, b"", False

    tool._fetch_once = never  # type: ignore[method-assign]
    with pytest.raises(BlockedTarget):
        await tool({"url": url}, make_call({"model": "m", "messages": []}))
    assert fetched == []


def test_there_are_at_least_twenty_bad_targets():
    assert len(BAD_URLS) >= 20


async def test_off_by_default_every_url_is_refused():
    tool = HttpGet(HttpGet.Config(), make_services(), resolver=fake_resolver)
    with pytest.raises(BlockedTarget, match="allow-list"):
        await tool({"url": "https://example.com/"}, make_call({"model": "m", "messages": []}))


@pytest.mark.parametrize("location", [
    "http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:80/", "http://evil.test/x", "/../",  # last: same host, allowed
])
async def test_each_redirect_hop_is_checked_again(location):
    hops: list[tuple[str, str]] = []
    tool = HttpGet(HttpGet.Config(allow_hosts=ALLOW + ["127.0.0.1"], max_redirects=2), make_services(), resolver=fake_resolver)

    async def fetch(url, host, ip):
        hops.append((url, ip))
        if len(hops) == 1:
            return 302, {"location": location}, b"", False
        return 200, {"content-type": "text/plain"}, b"fine", False

    tool._fetch_once = fetch  # type: ignore[method-assign]
    call = make_call({"model": "m", "messages": []})
    if location.startswith("/"):
        out = await tool({"url": "http://example.com/a/b"}, call)
        assert out["body"] == "fine" and hops[1] == ("http://example.com/", "93.184.216.34")
    else:
        with pytest.raises(BlockedTarget):
            await tool({"url": "http://example.com/"}, call)
        assert len(hops) == 1  # the bad hop was never connected to


async def test_too_many_redirects_are_refused():
    tool = HttpGet(HttpGet.Config(allow_hosts=ALLOW, max_redirects=2), make_services(), resolver=fake_resolver)

    async def loop(url, host, ip):
        return 301, {"location": "http://example.com/again"}, b"", False

    tool._fetch_once = loop  # type: ignore[method-assign]
    with pytest.raises(BlockedTarget, match="redirects"):
        await tool({"url": "http://example.com/"}, make_call({"model": "m", "messages": []}))


def test_public_addresses_pass():
    import ipaddress

    for a in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"):
        assert ip_is_public(ipaddress.ip_address(a))
    assert check_url("https://example.com/x?y=1", ["example.com"]) == ("https", "example.com", 443)


async def test_resolution_pins_the_first_checked_address():
    assert await resolve_public("example.com", 80, fake_resolver) == "93.184.216.34"


async def test_fetch_connects_to_the_pinned_address_and_cuts_the_body():
    """The one real connection: a name that does not resolve anywhere reaches loopback only via the pin."""
    async def big(request):
        assert request.headers["Host"].startswith("pinned.invalid")
        return web.Response(body=b"x" * 5000, content_type="text/plain")

    async def redirect(request):
        raise web.HTTPFound("http://10.0.0.1/")

    app = web.Application()
    app.router.add_get("/big", big)
    app.router.add_get("/redir", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        tool = HttpGet(HttpGet.Config(allow_hosts=["pinned.invalid"], max_bytes=1000), make_services())
        status, headers, body, truncated = await asyncio.wait_for(
            tool._fetch_once(f"http://pinned.invalid:{port}/big", "pinned.invalid", "127.0.0.1"), 5)
        assert status == 200 and len(body) == 1000 and truncated
        status, headers, _, _ = await tool._fetch_once(f"http://pinned.invalid:{port}/redir", "pinned.invalid", "127.0.0.1")
        assert status == 302 and headers["location"] == "http://10.0.0.1/"  # not followed by aiohttp
    finally:
        await runner.cleanup()
