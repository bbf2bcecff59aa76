"""X1: SSRF guard for provider base_url, at config time and at connect time (gateway/netguard.py)."""
from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import web

from gateway import netguard
from gateway.config import ConfigError, parse_config
from gateway.netguard import Allowlist, BlockedURL, GuardedResolver, check_url

NONE = Allowlist()

REFUSED = [
    # loopback, all spellings
    "http://127.0.0.1/v1", "http://127.0.0.1:11434", "http://127.1/", "http://127.0.1/", "http://0x7f.1/",
    "http://0x7f000001/", "http://2130706433/", "http://017700000001/", "http://0177.0.0.1/", "http://0177.1/",
    "http://127.000.000.001/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]/", "http://[::127.0.0.1]/", "http://localhost/", "http://LOCALHOST./",
    "http://api.localhost/", "http://127.0.0.1./",
    # unspecified
    "http://0.0.0.0/", "http://0/", "http://[::]/",
    # private
    "http://10.0.0.1/", "http://172.16.5.4/", "http://192.168.1.1/", "http://[::ffff:10.0.0.1]/", "http://[::ffff:192.168.0.1]/",
    # link-local / metadata
    "http://169.254.169.254/latest/meta-data/", "http://169.254.170.2/", "http://[fe80::1]/", "http://[fe80::1%25eth0]/",
    "http://metadata.google.internal/computeMetadata/v1/", "http://[fd00:ec2::254]/", "http://100.100.100.200/",
    "http://[::ffff:169.254.169.254]/", "http://0xa9fea9fe/", "http://2852039166/",
    # CGNAT, ULA, multicast, reserved, 6to4 / NAT64 wrappers
    "http://100.64.0.1/", "http://100.127.255.254/", "http://[fc00::1]/", "http://[fd12:3456::1]/", "http://224.0.0.1/",
    "http://240.0.0.1/", "http://255.255.255.255/", "http://[2002:7f00:1::]/", "http://[64:ff9b::a9fe:a9fe]/",
    "http://192.0.0.192/", "http://198.18.0.1/",
    # userinfo, schemes, junk
    "http://user:pass@api.openai.com/v1", "http://api.openai.com@127.0.0.1/", "https://evil@169.254.169.254/",
    "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "ftp://example.com/", "dict://127.0.0.1:11211/",
    "unix:///var/run/docker.sock", "//api.openai.com/v1", "api.openai.com/v1", "http:///v1", "http://exa mple.com/",
    "http://example.com\r\nX: y/", "http://ex\u0430mple.com/", "http://127.0.0.1\\@example.com/", "http://example.com:99999/",
]

ALLOWED_PUBLIC = ["https://api.openai.com/v1", "https://api.anthropic.com", "http://8.8.8.8:8080/v1", "https://[2606:4700::1111]/v1",
                  "https://generativelanguage.googleapis.com", "https://api.groq.com/openai/v1"]


@pytest.mark.parametrize("url", REFUSED)
def test_refused_at_config_time(url: str) -> None:
    with pytest.raises(BlockedURL):
        check_url(url, NONE)


def test_payload_count() -> None:
    assert len(REFUSED) >= 40


@pytest.mark.parametrize("url", ALLOWED_PUBLIC)
def test_public_urls_pass(url: str) -> None:
    check_url(url, NONE)


def test_allowlist_entries() -> None:
    allow = Allowlist.parse(["127.0.0.0/8", "ollama.internal", "*.svc.local", "::1"])
    assert check_url("http://127.0.0.1:11434", allow)[1] == "127.0.0.1"
    check_url("http://[::1]:8000/v1", allow)
    check_url("http://ollama.internal:11434", allow)
    check_url("http://vllm.ns.svc.local/v1", allow)
    with pytest.raises(BlockedURL):
        check_url("http://127.1:11434", allow)  # non-canonical spellings stay refused even inside an allowed range
    with pytest.raises(BlockedURL):
        check_url("http://10.0.0.1/", allow)
    with pytest.raises(BlockedURL):
        check_url("http://localhost/", allow)  # names are allowed by name, not by address


def _cfg(base_url: str, **extra):
    return {"providers": {"local": {"type": "openai", "api_key": "k", "base_url": base_url, **extra}},
            "models": {"m": {"targets": ["local/x"]}}}


def test_config_loader_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(netguard.ENV_ALLOW, raising=False)
    for url in ("http://169.254.169.254/", "http://2130706433/", "http://[::ffff:127.0.0.1]/v1"):
        with pytest.raises(ConfigError) as ei:
            parse_config(_cfg(url), "<t>")
        assert any(p.startswith("providers.local.base_url:") for p in ei.value.problems), ei.value.problems
    parse_config(_cfg("https://api.openai.com/v1"), "<t>")


def test_allowlist_env_and_provider_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(netguard.ENV_ALLOW, raising=False)
    with pytest.raises(ConfigError):
        parse_config(_cfg("http://127.0.0.1:11434/v1"), "<t>")
    cfg = parse_config(_cfg("http://127.0.0.1:11434/v1", allow_private=True), "<t>")
    assert cfg.providers["local"].extra["allow_private"] is True
    assert netguard.resolver_for_config(cfg).allow.allows_ip(__import__("ipaddress").ip_address("127.0.0.1"))
    monkeypatch.setenv(netguard.ENV_ALLOW, "127.0.0.1/32")
    parse_config(_cfg("http://127.0.0.1:11434/v1"), "<t>")
    with pytest.raises(ConfigError):
        parse_config(_cfg("http://169.254.169.254/"), "<t>")  # the allow-list is not a blanket pass


class FakeResolver(netguard.AbstractResolver):
    """Scripted DNS: each name maps to a list of answers, consumed in turn (rebinding)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls = 0

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        self.calls += 1
        seq = self.answers[host]
        ips = seq.pop(0) if len(seq) > 1 else seq[0]
        return [{"hostname": host, "host": ip, "port": port, "family": socket.AF_INET6 if ":" in ip else socket.AF_INET,
                 "proto": 0, "flags": 0} for ip in ips]

    async def close(self) -> None:
        pass


def test_resolver_refuses_private_answers() -> None:
    fake = FakeResolver({
        "internal.example.com": [["10.1.2.3"]], "meta.example.com": [["169.254.169.254"]],
        "mixed.example.com": [["93.184.216.34", "127.0.0.1"]], "v6.example.com": [["::ffff:127.0.0.1"]],
        "ula.example.com": [["fd00::5"]], "cgnat.example.com": [["100.64.1.1"]],
        "rebind.example.com": [["93.184.216.34"], ["127.0.0.1"]], "good.example.com": [["93.184.216.34"]],
        "ollama.lan": [["192.168.1.20"]],
    })
    r = GuardedResolver(Allowlist.parse(["ollama.lan"]), inner=fake)

    async def go() -> None:
        for host in ("internal.example.com", "meta.example.com", "mixed.example.com", "v6.example.com", "ula.example.com",
                     "cgnat.example.com", "localhost", "2130706433", "127.1"):
            with pytest.raises(OSError):
                await r.resolve(host, 443)
        assert (await r.resolve("rebind.example.com", 443))[0]["host"] == "93.184.216.34"
        with pytest.raises(OSError):  # the second (rebinding) answer is private
            await r.resolve("rebind.example.com", 443)
        assert (await r.resolve("good.example.com", 443))[0]["host"] == "93.184.216.34"
        assert (await r.resolve("ollama.lan", 11434))[0]["host"] == "192.168.1.20"

    asyncio.run(asyncio.wait_for(go(), 10))


async def _serve(handler) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    return runner, sock.getsockname()[1]


def test_connect_time_session_real_dns() -> None:
    """A real aiohttp session as server.py builds it: a name resolving to loopback and a literal
    loopback IP are refused without the allow-list; allow-listed, the same request works."""
    host = socket.gethostname()
    try:
        resolved = {ai[4][0] for ai in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)}
    except OSError:
        resolved = set()
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"ok": True})

    async def go() -> None:
        runner, port = await _serve(handler)
        try:
            for allow, expect_ok in ((NONE, False), (Allowlist.parse(["127.0.0.0/8", host]), True)):
                conn = aiohttp.TCPConnector(resolver=GuardedResolver(allow), ttl_dns_cache=300)
                async with aiohttp.ClientSession(connector=conn, trace_configs=[netguard.trace_config(allow)]) as s:
                    urls = [f"http://127.0.0.1:{port}/lit"]
                    if resolved and all(not netguard.ip_is_public(__import__("ipaddress").ip_address(a)) for a in resolved) and "127.0.0.1" in resolved:
                        urls.append(f"http://{host}:{port}/name")
                    for url in urls:
                        if expect_ok:
                            async with s.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                                assert resp.status == 200
                        else:
                            with pytest.raises(aiohttp.ClientConnectionError):
                                async with s.get(url, timeout=aiohttp.ClientTimeout(total=5)):
                                    pass
                if not expect_ok:
                    assert hits == []
            assert "/lit" in hits
        finally:
            await runner.cleanup()

    asyncio.run(asyncio.wait_for(go(), 20))
