"""aiohttp middleware that turns every non-proxied failure into an OpenAI-style error body.

Unknown routes → 404 ``not_found``, wrong method → 405, anything unexpected → 500
``internal_error`` with the request id (logged with its traceback server-side only).
"""
from __future__ import annotations

import logging

from aiohttp import web

from ..errors import GatewayError
from .request import request_id
from .routes import error_response

log = logging.getLogger("watchllm.http")


@web.middleware
async def error_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    try:
        return await handler(request)
    except GatewayError as err:
        return error_response(err, request_id(request))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            err = GatewayError("not_found", f"no route for {request.method} {request.path}")
        elif exc.status == 405:
            err = GatewayError("method_not_allowed", f"{request.method} is not allowed on {request.path}")
        elif exc.status == 413:
            err = GatewayError("payload_too_large", "request body too large")
        else:
            err = GatewayError("invalid_request", exc.reason or "bad request", status=exc.status)
        return error_response(err, request_id(request))
    except Exception:
        rid = request_id(request)
        log.exception("unhandled error", extra={"request_id": rid})
        return error_response(GatewayError("internal_error", f"internal error (request id {rid})"), rid)
