"""atheris fuzz targets: each ``target_<name>(data: bytes)`` must never raise anything but the
documented rejection, and never take > 1 s on one input (checked by the runner)."""
from __future__ import annotations

import atheris

# third-party code first, uninstrumented (coverage feedback is for our parsers; start-up stays fast)
import aiohttp  # noqa: F401,E402
import cryptography.hazmat.primitives.ciphers.aead  # noqa: F401,E402
import jwt  # noqa: F401,E402
import orjson  # noqa: E402
import yaml  # noqa: E402

with atheris.instrument_imports(include=["gateway", "plugins"]):
    from gateway import netguard
    from gateway.config import ConfigError, parse_config
    from gateway.crypto import parse_api_key
    from gateway.errors import GatewayError
    from gateway.http import request as req
    from gateway.upstream.sse import parse_sse_lines

_scanner = None
_tokens = None


def target_sse(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    events = parse_sse_lines(text.split("\n"))
    for ev in events:
        assert isinstance(ev.data, str)


def target_request(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    endpoint = fdp.PickValueInList(["chat.completions", "completions", "embeddings"])
    buf = bytearray(fdp.ConsumeBytes(fdp.remaining_bytes()))
    try:
        req._check_containers(buf)
        body = orjson.loads(buf)
        if not isinstance(body, dict):
            return
        req._check_depth(body)
        req.validate_body(endpoint, body)
    except (GatewayError, orjson.JSONDecodeError):
        pass


def target_dlp(data: bytes) -> None:
    global _scanner
    if _scanner is None:
        from plugins.middleware.dlp.detectors import BUILTIN
        from plugins.middleware.dlp.scanner import Scanner

        _scanner = Scanner(BUILTIN)
    text = data.decode("utf-8", errors="replace")
    prev = -1
    for f in _scanner.scan(text):
        assert f.start >= prev and 0 <= f.start <= f.end <= len(text), f
        prev = f.end


def target_config(data: bytes) -> None:
    try:
        doc = yaml.safe_load(data.decode("utf-8", errors="replace"))
    except yaml.YAMLError:
        return
    except RecursionError:
        return
    try:
        parse_config(doc, "<fuzz>", env={"X": "1"})
    except ConfigError:
        pass


def target_auth(data: bytes) -> None:
    global _tokens
    if _tokens is None:
        from gateway.admin.tokens import TokenService

        _tokens = TokenService(secret="f" * 48, issuer="watchllm", audience="watchllm-admin")
    from gateway.admin.tokens import TokenError
    from plugins.middleware.auth import _presented_key

    fdp = atheris.FuzzedDataProvider(data)
    s = fdp.ConsumeUnicodeNoSurrogates(512)
    parse_api_key(s)
    _presented_key({"Authorization": s, "X-API-Key": fdp.ConsumeUnicodeNoSurrogates(128)})
    try:
        _tokens.decode(s)
    except TokenError:
        pass


def target_netguard(data: bytes) -> None:
    url = data.decode("utf-8", errors="replace")
    try:
        netguard.check_url(url, netguard.Allowlist())
    except netguard.BlockedURL:
        pass


TARGETS = {name[7:]: fn for name, fn in globals().items() if name.startswith("target_")}
