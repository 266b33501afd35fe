"""A synchronous request's deadline counts from when it reached this process.

Under overload a request waits before its handler runs: in the socket until the event loop
reads it, in the loop while the body arrives, and again before the answer is written. Under
`python -m api` the HTTP protocol stamps the true arrival (api/serving/shedding.py, from the
kernel's TCP_INFO); elsewhere `StampArrival` notes when the app got the request. `PredictionService`
counts the wait from there and subtracts the loop's lag for the write (README: Failure modes,
overload; docs/DESIGN.md: "Deadlines under overload").
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

ARRIVED = "digits.arrived"
"""Scope key: the event loop's clock when the request reached the app."""


class StampArrival:
    """Pure ASGI middleware, outermost: one clock read per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ARRIVED not in scope:  # set by api.serving.shedding if used
            scope[ARRIVED] = asyncio.get_running_loop().time()
        await self.app(scope, receive, send)


def arrived_at(request: Request) -> float:
    """When `request` reached the app (now, where no middleware stamped it: unit tests)."""
    arrived = request.scope.get(ARRIVED)
    return arrived if arrived is not None else asyncio.get_running_loop().time()
