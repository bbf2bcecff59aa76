"""The ``http_get`` tool: fetch a web page for the model, behind an SSRF guard.

Off by default: with an empty ``allow_hosts`` every URL is refused. Each hop
(redirects are followed by hand, never by aiohttp) is checked by ``ssrf.check_url``,
resolved with every answer required to be public, and the connection is pinned to
the checked address through a one-entry resolver, so DNS rebinding between the
check and the connect cannot redirect it. Bodies are cut at ``max_bytes``.
"""
from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver

from gateway.call import Call
from gateway.plugin import Services

from .ssrf import BlockedTarget, Resolver, check_url, resolve_public, system_resolver

__all__ = ["HttpGet", "HttpGetConfig", "BlockedTarget"]


@dataclass(frozen=True, kw_only=True)
class HttpGetConfig:
    allow_hosts: list[str] = field(default_factory=list, metadata={"help": "host names (or *.domain) the tool may fetch; empty = off"})
    allow_ports: list[int] = field(default_factory=lambda: [80, 443])
    max_bytes: int = field(default=65536, metadata={"help": "response bytes kept; the rest is cut"})
    max_redirects: int = 3
    timeout: float = field(default=10.0, metadata={"help": "seconds for the whole fetch, redirects included"})
    user_agent: str = "watchllm-http-get/1"


class _PinnedResolver(AbstractResolver):
    """Answers the one host with the one address that passed the guard."""

    def __init__(self, host: str, ip: str) -> None:
        self.host, self.ip = host, ip

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        if host.rstrip(".").lower() != self.host.lower():
            raise OSError(f"unexpected host {host!r}")
        fam = socket.AF_INET6 if ":" in self.ip else socket.AF_INET
        return [{"hostname": host, "host": self.ip, "port": port, "family": fam, "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        return None


class HttpGet:
    """GET a URL on the allow-list and return its status, type and (cut) text."""

    Config = HttpGetConfig
    name = "http_get"
    description = "Fetch a web page (HTTP GET) from an allowed host and return its text."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"url": {"type": "string", "description": "absolute http(s) URL", "maxLength": 2048}},
        "required": ["url"],
        "additionalProperties": False,
    }

    def __init__(self, config: HttpGetConfig, services: Services, *, resolver: Resolver | None = None) -> None:
        self.cfg = config
        self.timeout = config.timeout
        self.resolver: Resolver = resolver or system_resolver

    async def __call__(self, arguments: dict[str, Any], call: Call) -> dict[str, Any]:
        url = str(arguments["url"])
        async with asyncio.timeout(self.cfg.timeout):
            for _hop in range(self.cfg.max_redirects + 1):
                _scheme, host, port = check_url(url, self.cfg.allow_hosts, self.cfg.allow_ports)
                ip = await resolve_public(host, port, self.resolver)
                status, headers, body, truncated = await self._fetch_once(url, host, ip)
                if status in (301, 302, 303, 307, 308) and headers.get("location"):
                    url = urljoin(url, headers["location"])
                    continue
                return {
                    "url": url, "status": status, "content_type": headers.get("content-type", ""),
                    "truncated": truncated, "body": body.decode("utf-8", errors="replace"),
                }
        raise BlockedTarget(f"more than {self.cfg.max_redirects} redirects")

    async def _fetch_once(self, url: str, host: str, ip: str) -> tuple[int, dict[str, str], bytes, bool]:
        """One request to the pinned address, no redirects followed, at most max_bytes read."""
        connector = aiohttp.TCPConnector(resolver=_PinnedResolver(host, ip), use_dns_cache=False, force_close=True)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=True, trust_env=False) as session:
            async with session.get(url, allow_redirects=False, headers={"user-agent": self.cfg.user_agent}) as resp:
                data = bytearray()
                async for piece in resp.content.iter_chunked(16384):
                    data += piece
                    if len(data) > self.cfg.max_bytes:
                        break
                truncated = len(data) > self.cfg.max_bytes
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, bytes(data[: self.cfg.max_bytes]), truncated
