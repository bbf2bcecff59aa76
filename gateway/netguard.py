"""SSRF guard for upstream (provider) URLs: checked at config time and at connect time.

Rules (RELIABILITY.md §2, X1): ``http``/``https`` only; no userinfo; the host must be a
plain DNS name or a canonical IP literal (the legacy numeric spellings ``127.1``,
``0x7f.1``, ``0177.0.0.1``, ``2130706433`` are refused outright, whatever they decode to);
the address must be public: not loopback, private, link-local (169.254/16, cloud
metadata), CGNAT 100.64/10, ULA fc00::/7, multicast, reserved, unspecified (0.0.0.0,
``::``), nor an IPv4-mapped / 6to4 / NAT64 / Teredo wrapper of such an address.

Names are not resolved at config time (start-up must not depend on DNS); at connect time
:class:`GuardedResolver` (passed to the shared ``aiohttp.TCPConnector``) checks every
address a name resolves to, so a name that resolves privately, or a DNS rebinding answer,
is refused. aiohttp connects to the checked addresses (the answer is pinned for the
connection). Literal IPs skip resolvers in aiohttp; for the shared provider session that
is covered by the config-time check (a provider's ``base_url`` is fixed in config, and
requests never follow redirects). :func:`trace_config` re-checks every outgoing URL at
request start for a session whose URLs come from elsewhere; it is NOT on the shared
session: measured, it cost about 420 µs of CPU per proxied request (586 vs 1,005 µs).

Local upstreams (Ollama, vLLM on the same host, the test suite's fake upstreams) need an
explicit allow-list: ``WATCHLLM_ALLOW_PRIVATE_UPSTREAMS`` = comma-separated host names
(``localhost``, ``*.svc.cluster.local``), IP addresses or CIDRs (``127.0.0.1/32``,
``10.0.0.0/8``), and/or ``allow_private: true`` on one provider in the YAML (that
provider's host is then allowed).
"""
from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

__all__ = [
    "ENV_ALLOW", "BlockedURL", "Allowlist", "allowlist_from_env", "parse_host", "ip_is_public",
    "check_url", "check_provider", "GuardedResolver", "resolver_for_config", "trace_config",
]

ENV_ALLOW = "WATCHLLM_ALLOW_PRIVATE_UPSTREAMS"
IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_METADATA = {ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "192.0.0.192", "fd00:ec2::254")}
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "metadata", "metadata.google.internal",
                "instance-data", "instance-data.ec2.internal", "metadata.azure.internal"}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_NUMERICISH = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]*))*$", re.IGNORECASE)
_CANONICAL_V4 = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class BlockedURL(ValueError):
    """The upstream URL, or an address its host resolves to, may not be used."""


class BlockedConnection(aiohttp.ClientConnectionError):
    """Raised inside aiohttp at connect time, so providers map it like any connection failure."""


# --- classification ------------------------------------------------------------------------
def ip_is_public(ip: IP) -> bool:
    """True only for globally routable unicast addresses."""
    if ip in _METADATA:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        if ip.ipv4_mapped is not None:
            return False  # ::ffff:a.b.c.d never needs to reach an upstream; refuse regardless
        if ip.sixtofour is not None:
            return ip_is_public(ip.sixtofour)
        if ip.teredo is not None:
            return False
        if any(ip in n for n in _NAT64):
            return ip_is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if int(ip) >> 32 == 0:  # IPv4-compatible ::a.b.c.d (deprecated) and ::, ::1
            return False
    elif ip in _CGNAT:
        return False
    return bool(ip.is_global) and not (ip.is_multicast or ip.is_loopback or ip.is_link_local or ip.is_private
                                        or ip.is_reserved or ip.is_unspecified)


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """What inet_aton(3) would make of ``host`` (1-4 parts, decimal/octal/hex), or None."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    nums: list[int] = []
    for p in parts:
        try:
            if p.lower().startswith("0x"):
                nums.append(int(p[2:] or "0", 16))
            elif len(p) > 1 and p.startswith("0"):
                nums.append(int(p, 8))
            else:
                nums.append(int(p, 10))
        except ValueError:
            return None
    *head, last = nums
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    value = value * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(value)


def parse_host(host: str) -> IP | None:
    """The IP literal in a URL host (brackets allowed), None for a DNS name.

    Raises BlockedURL for the legacy numeric spellings and for hosts that are neither.
    """
    h = host.strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if "%" in h:
        raise BlockedURL(f"host {host!r}: zone ids and percent-escapes are not allowed")
    try:
        return ipaddress.ip_address(h)
    except ValueError:
        pass
    if ":" in h:
        raise BlockedURL(f"host {host!r} is not a valid address")
    name = h.rstrip(".").lower()
    if _CANONICAL_V4.match(name):  # "127.0.0.1." is still that address
        return ipaddress.IPv4Address(name)
    if _NUMERICISH.match(name):
        decoded = _legacy_ipv4(name)
        shown = f" (= {decoded})" if decoded is not None else ""
        raise BlockedURL(f"host {host!r} is a non-canonical numeric address{shown}")
    if not name or not host.isascii() or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise BlockedURL(f"host {host!r} is not a plain DNS name")
    return None


# --- allow-list ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Allowlist:
    names: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> "Allowlist":
        names: set[str] = set()
        nets: list[Network] = []
        for raw in entries:
            e = raw.strip().lower()
            if not e:
                continue
            try:
                nets.append(ipaddress.ip_network(e.strip("[]"), strict=False))
            except ValueError:
                names.add(e.rstrip("."))
        return cls(frozenset(names), tuple(nets))

    def __or__(self, other: "Allowlist") -> "Allowlist":
        return Allowlist(self.names | other.names, self.networks + other.networks)

    def allows_name(self, host: str) -> bool:
        h = host.lower().rstrip(".").strip("[]")
        for p in self.names:
            if p.startswith("*.") and h.endswith(p[1:]) and len(h) > len(p) - 1:
                return True
            if h == p:
                return True
        return False

    def allows_ip(self, ip: IP) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == n.version and ip in n for n in self.networks)


def allowlist_from_env(env: dict[str, str] | None = None) -> Allowlist:
    value = (os.environ if env is None else env).get(ENV_ALLOW, "")
    return Allowlist.parse(value.split(","))


# --- config time ---------------------------------------------------------------------------
def check_url(url: str, allow: Allowlist | None = None) -> tuple[str, str, int]:
    """Validate an upstream base URL; return (scheme, host, port). Nothing is resolved."""
    allow = allowlist_from_env() if allow is None else allow
    if not isinstance(url, str) or any(c in url for c in "\r\n\t\x00 ") or not url.isascii():
        raise BlockedURL("the URL contains whitespace, control or non-ASCII characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BlockedURL(f"malformed URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BlockedURL(f"scheme {scheme or 'none'!r} is not allowed (http and https only)")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise BlockedURL("credentials (userinfo) in the URL are not allowed")
    if "\\" in url:
        raise BlockedURL("backslashes are not allowed in the URL")
    host = parts.hostname or ""
    if not host:
        raise BlockedURL("the URL has no host")
    port = port or (443 if scheme == "https" else 80)
    ip = parse_host(host)
    if ip is not None:
        if not ip_is_public(ip) and not allow.allows_ip(ip) and not allow.allows_name(str(ip)):
            raise BlockedURL(f"address {ip} is not public (loopback, private, link-local, CGNAT, ULA, mapped or reserved); "
                             f"allow it with {ENV_ALLOW} or `allow_private: true` on the provider")
        return scheme, str(ip), port
    name = host.rstrip(".").lower()
    if (name in _LOCAL_NAMES or name.endswith(".localhost")) and not allow.allows_name(name):
        raise BlockedURL(f"host {name!r} is a local name; allow it with {ENV_ALLOW} or `allow_private: true` on the provider")
    return scheme, name, port


def check_provider(path: str, options: Any, allow_private: bool = False, env: dict[str, str] | None = None) -> list[str]:
    """Config-loader hook: problems for ``<path>.base_url`` (empty when fine or no base_url)."""
    url = getattr(options, "base_url", None)
    if not isinstance(url, str):
        return []
    allow = allowlist_from_env(env)
    if allow_private:
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:
            host = ""
        allow = allow | Allowlist.parse([host])
    try:
        check_url(url, allow)
    except BlockedURL as exc:
        return [f"{path}.base_url: {exc}"]
    return []


# --- connect time --------------------------------------------------------------------------
class GuardedResolver(AbstractResolver):
    """Wraps aiohttp's default resolver; refuses any answer that is not public unless allow-listed."""

    def __init__(self, allow: Allowlist | None = None, inner: AbstractResolver | None = None) -> None:
        self.allow = allowlist_from_env() if allow is None else allow
        self._inner = inner

    def _resolver(self) -> AbstractResolver:
        if self._inner is None:
            self._inner = aiohttp.DefaultResolver()
        return self._inner

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        name = host.rstrip(".").lower()
        try:
            literal = parse_host(name)
        except BlockedURL as exc:
            raise OSError(f"refused upstream host: {exc}") from None
        if self.allow.allows_name(name):
            return await self._resolver().resolve(host, port, family)
        if literal is None and (name in _LOCAL_NAMES or name.endswith(".localhost")):
            raise OSError(f"refused upstream host {name!r}: a local name (not on {ENV_ALLOW})")
        results = await self._resolver().resolve(host, port, family)
        for r in results:
            try:
                ip = ipaddress.ip_address(str(r["host"]).split("%", 1)[0])
            except ValueError:
                raise OSError(f"refused upstream host {name!r}: unparsable answer {r['host']!r}") from None
            if not ip_is_public(ip) and not self.allow.allows_ip(ip):
                raise OSError(f"refused upstream host {name!r}: it resolves to non-public {ip}")
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def _config_allow(config: Any) -> Allowlist:
    allow = allowlist_from_env()
    for entry in getattr(config, "providers", {}).values():
        if getattr(entry, "extra", {}).get("allow_private"):
            try:
                host = urlsplit(getattr(entry.options, "base_url", "") or "").hostname
            except ValueError:
                host = None
            if host:
                allow = allow | Allowlist.parse([host])
    return allow


def resolver_for_config(config: Any) -> GuardedResolver:
    """The resolver for the shared upstream session: env allow-list + providers marked allow_private."""
    return GuardedResolver(_config_allow(config))


def trace_config(allow: Allowlist | None = None, config: Any = None) -> aiohttp.TraceConfig:
    """Re-check every outgoing URL at request start (literal IPs never reach a resolver)."""
    rules = _config_allow(config) if config is not None else (allowlist_from_env() if allow is None else allow)
    tc = aiohttp.TraceConfig()

    async def on_start(_session: Any, _ctx: Any, params: aiohttp.TraceRequestStartParams) -> None:
        try:
            check_url(str(params.url), rules)
        except BlockedURL as exc:
            raise BlockedConnection(f"refused upstream URL: {exc}") from None

    tc.on_request_start.append(on_start)
    return tc
