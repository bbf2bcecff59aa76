"""The Middleware contract and the chain, built once at start-up.

A middleware is any object with ``async __call__(call, call_next) -> Reply``:

* before ``call_next`` it may edit ``call`` or short-circuit by returning its own
  ``Reply`` or raising ``GatewayError``;
* after it, it may edit the reply's headers/body or register stream hooks
  (see ``gateway.reply``). It MUST NOT call ``call_next`` twice unless it is a
  retrying layer that knows no byte has reached the client.

``build_chain`` wraps every layer in an error boundary: a ``GatewayError`` raised in
layer *i* reaches layer *i-1* as ``Reply.from_error``, so outer layers (metrics,
usage) see every failure as a reply. Anything else propagates to the HTTP layer,
which answers 500 ``internal_error`` and logs it with the request id.
"""
from __future__ import annotations

from typing import Awaitable, Callable, Protocol, Sequence

from .call import Call
from .errors import GatewayError
from .reply import Reply

__all__ = ["Handler", "Middleware", "build_chain", "no_terminal"]

Handler = Callable[[Call], Awaitable[Reply]]


class Middleware(Protocol):
    async def __call__(self, call: Call, call_next: Handler, /) -> Reply: ...


async def no_terminal(call: Call) -> Reply:
    """The handler below the last layer: reached only when no layer answered (no router)."""
    raise GatewayError("service_unavailable", "no middleware in the pipeline answered this request (is `router` last?)")


def _bound(layer: Middleware, inner: Handler) -> Handler:
    async def handler(call: Call) -> Reply:
        try:
            return await layer(call, inner)
        except GatewayError as err:
            return Reply.from_error(err)

    handler.__qualname__ = f"chain[{type(layer).__name__}]"
    return handler


def build_chain(layers: Sequence[Middleware], terminal: Handler = no_terminal) -> Handler:
    """Compose ``layers`` (outermost first) around ``terminal`` into one handler."""

    async def bottom(call: Call) -> Reply:
        try:
            return await terminal(call)
        except GatewayError as err:
            return Reply.from_error(err)

    handler: Handler = bottom
    for layer in reversed(layers):
        handler = _bound(layer, handler)
    return handler
