"""SSRF guard for outbound tool requests: which URLs and addresses a tool may reach.

The rules (RELIABILITY.md §2): http/https only; no userinfo; the host must be on the
allow-list; numeric host spellings other than canonical dotted quads (decimal
``2130706433``, octal ``0177.0.0.1``, hex ``0x7f.1``, short ``127.1``) are refused
outright; every address a name resolves to must be public (not loopback, private,
link-local, CGNAT, ULA, multicast, reserved, unspecified, IPv4-mapped/6to4/NAT64
wrappers of those, or a cloud metadata address). The caller then connects to the
address that was checked (pinning), so a second DNS answer cannot differ.
"""
from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from typing import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

__all__ = ["BlockedTarget", "Resolver", "system_resolver", "ip_is_public", "check_url", "resolve_public", "host_allowed"]

Resolver = Callable[[str, int], Awaitable[list[str]]]
IP = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA = {
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "192.0.0.192", "fd00:ec2::254")
}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]*))*\.?$", re.IGNORECASE)
_CANONICAL_V4 = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")


class BlockedTarget(ValueError):
    """The URL or an address it resolves to may not be fetched."""


def ip_is_public(ip: IP) -> bool:
    if ip in _METADATA:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip_is_public(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            return ip_is_public(ip.sixtofour)
        if ip.teredo is not None:
            return False
        if ip in _NAT64 or ip in _NAT64_LOCAL:
            return ip_is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.scope_id:
            return False
    elif ip in _CGNAT:
        return False
    return bool(ip.is_global) and not (ip.is_multicast or ip.is_loopback or ip.is_link_local or ip.is_private
                                        or ip.is_reserved or ip.is_unspecified)


def host_allowed(host: str, allow: Iterable[str]) -> bool:
    """Exact names, or ``*.example.com`` for its subdomains (not the apex)."""
    host = host.lower().rstrip(".")
    for pattern in allow:
        p = pattern.lower().rstrip(".")
        if p.startswith("*.") and host.endswith(p[1:]) and len(host) > len(p) - 1:
            return True
        if host == p:
            return True
    return False


def check_url(url: str, allow_hosts: Iterable[str], allow_ports: Iterable[int] = (80, 443)) -> tuple[str, str, int]:
    """Validate the URL's shape; return (scheme, host, port). Nothing is resolved here."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BlockedTarget(f"malformed URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BlockedTarget(f"scheme {scheme or 'none'!r} is not allowed (http and https only)")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise BlockedTarget("credentials in the URL are not allowed")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise BlockedTarget("the URL has no host")
    if any(c in host for c in "\\%\x00 ") or not host.isascii():
        raise BlockedTarget(f"host {host!r} is not a plain DNS name")
    port = port or (443 if scheme == "https" else 80)
    if port not in set(allow_ports):
        raise BlockedTarget(f"port {port} is not allowed")
    literal = _literal_ip(host)
    if literal is not None and not ip_is_public(literal):
        raise BlockedTarget(f"address {literal} is not public")
    if not host_allowed(host, allow_hosts):
        raise BlockedTarget(f"host {host!r} is not on the allow-list")
    return scheme, host, port


def _literal_ip(host: str) -> IP | None:
    """An IP literal in the host, refusing the legacy numeric spellings resolvers would accept."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host) and not _CANONICAL_V4.match(host):
        raise BlockedTarget(f"numeric host {host!r} is not a canonical address")
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def resolve_public(host: str, port: int, resolver: Resolver) -> str:
    """Resolve ``host``; every answer must be public. Returns the address to pin the connection to."""
    literal = _literal_ip(host)
    if literal is not None:
        if not ip_is_public(literal):
            raise BlockedTarget(f"address {literal} is not public")
        return str(literal)
    try:
        answers = await resolver(host, port)
    except (OSError, UnicodeError) as exc:  # UnicodeError: a label the IDNA codec refuses (empty, > 63 characters)
        raise BlockedTarget(f"cannot resolve {host!r}: {exc}") from None
    if not answers:
        raise BlockedTarget(f"{host!r} did not resolve")
    for a in answers:
        try:
            ip = ipaddress.ip_address(a.split("%", 1)[0]) if "%" not in a else None
        except ValueError:
            ip = None
        if ip is None or not ip_is_public(ip):
            raise BlockedTarget(f"{host!r} resolves to a non-public address ({a})")
    return answers[0]
