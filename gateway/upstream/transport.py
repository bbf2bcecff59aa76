"""JsonTransport: the HTTP half every provider plugin needs, written once.

A provider class inherits it and sets ``self.config`` (with ``timeout``, ``connect_timeout``,
``read_timeout``), ``self._services`` and ``self._base`` (the base URL without a trailing
slash); it provides ``headers_for(call, target)`` and ``error_from_response(status, raw,
headers, name)`` (its wire format's error body → ``ProviderError``). What it gets:

* whole JSON answers through the lean keep-alive client (``services.upstream``, h1.py), streams
  through the pooled aiohttp session (``services.http``); never a session per request, no redirects;
* timeouts: a total for JSON answers; for streams only the connect time and the gap between
  reads are bounded, so a long but live stream is not cut;
* errors mapped to stable codes: timeouts → ``provider_timeout``, connect/read failures →
  retryable ``provider_error``, an error status → the provider's own mapping (read at most
  ``MAX_ERROR_BODY`` bytes of it).
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

import aiohttp
import orjson

from ..call import Call, Target
from ..errors import ProviderError
from .h1 import H1Response, UpstreamError

__all__ = ["JsonTransport", "MAX_ERROR_BODY", "request_upstream"]

MAX_ERROR_BODY = 64 * 1024


class JsonTransport:
    NAME: ClassVar[str] = "provider"
    config: Any
    _services: Any
    _base: str

    def headers_for(self, call: Call | None, target: Target | None = None) -> dict[str, str]:  # pragma: no cover
        raise NotImplementedError

    def error_from_response(self, status: int, raw: bytes, headers: Mapping[str, str], name: str) -> ProviderError:  # pragma: no cover
        raise NotImplementedError

    def _session(self) -> aiohttp.ClientSession:
        if self._services.http is None:
            raise ProviderError("service_unavailable", "gateway HTTP client is not started", status=503)
        return self._services.http

    def _stream_timeout(self, target: Target | None) -> aiohttp.ClientTimeout:
        """A live stream may last long: cap the wait for headers and the gaps, not the total."""
        total = (target.timeout if target else None) or self.config.timeout
        return aiohttp.ClientTimeout(total=None, connect=self.config.connect_timeout, sock_read=min(self.config.read_timeout, total))

    async def _open_stream(self, method: str, path: str, payload: Any, *, target: Target | None,
                           call: Call | None = None) -> aiohttp.ClientResponse:
        """Open a streamed answer; return the open response (status < 400) or raise ProviderError."""
        name = target.provider if target else self.NAME
        data = orjson.dumps(payload) if payload is not None else None
        try:
            resp = await self._session().request(
                method, self._base + path, data=data, headers=self.headers_for(call, target),
                timeout=self._stream_timeout(target), allow_redirects=False,
            )
            if resp.status >= 400:
                try:
                    raw = await resp.content.read(MAX_ERROR_BODY)
                finally:
                    resp.release()
                raise self.error_from_response(resp.status, raw, resp.headers, name)
        except TimeoutError:
            raise ProviderError("provider_timeout", f"{name}: no answer within the timeout", retryable=True) from None
        except aiohttp.ClientError as exc:
            raise ProviderError("provider_error", f"{name}: cannot reach upstream ({type(exc).__name__})", retryable=True) from None
        return resp

    async def _json(self, method: str, path: str, payload: Any, *, target: Target | None, call: Call | None = None) -> Any:
        """A whole JSON answer, through the lean keep-alive client (gateway/upstream/h1.py)."""
        name = target.provider if target else self.NAME
        resp = await request_upstream(
            self._services, method, self._base + path, name=name, headers=self.headers_for(call, target),
            body=orjson.dumps(payload) if payload is not None else None,
            timeout=(target.timeout if target else None) or self.config.timeout, connect_timeout=self.config.connect_timeout)
        if resp.status >= 400:
            raise self.error_from_response(resp.status, resp.body[:MAX_ERROR_BODY], resp.headers, name)
        try:
            return orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            raise ProviderError("provider_error", f"{name}: answer is not JSON", upstream_status=resp.status) from None


async def request_upstream(services: Any, method: str, url: str, *, name: str, headers: Mapping[str, str],
                           body: bytes | None, timeout: float | None, connect_timeout: float | None) -> H1Response:
    """One call through ``services.upstream`` with its failures as ProviderErrors (stable codes)."""
    upstream = getattr(services, "upstream", None)
    if upstream is None:
        raise ProviderError("service_unavailable", "gateway HTTP client is not started", status=503)
    try:
        return await upstream.request(method, url, headers=headers, body=body, timeout=timeout, connect_timeout=connect_timeout)
    except TimeoutError:
        raise ProviderError("provider_timeout", f"{name}: no answer within the timeout", retryable=True) from None
    except UpstreamError as exc:
        raise ProviderError("provider_error", f"{name}: cannot reach upstream ({exc})", retryable=True) from None
    except ValueError as exc:  # a configured header (a project's key) with CR/LF: never sent
        raise ProviderError("provider_error", f"{name}: {exc}") from None
