"""Load shedding where it is cheap: in the HTTP protocol, before a request becomes ASGI work.

Under overload a request waits where no handler sees it: in the listening socket's accept
queue and in its connection's receive buffer, until the event loop gets to it. The kernel
knows how long: TCP_INFO's `tcpi_last_data_recv` is the time since the last bytes arrived
on the connection. `DeadlineHttpProtocol` (uvicorn's httptools protocol plus this) reads it
when a request's headers are parsed, so

- every request's scope carries its true arrival time (`api.serving.deadline.ARRIVED`): the sync
  deadline counts from there, not from when the process got around to it;
- a synchronous request that already waited `DIGITS_SHED_AFTER_S` (`DIGITS_SHED_STANDING_AFTER_S`
  while the queue in front of the process is standing, `StandingQueue`), or that admission
  would refuse anyway on what it already knows (`PredictionService.refusal_now`: queue wait
  beyond the budget, loop lag, the in-flight cap, the result subscription down), is answered
  503 from bytes built without the app (tens of microseconds, no task; the body is parsed past, not
  read into the app): far cheaper than the work it avoids. An admission refusal keeps the
  connection alive, so a keep-alive client is refused without a new handshake (5x the
  refusals per second of the app's own path, `make chaos`); a request that waited past
  `DIGITS_SHED_AFTER_S` closes it (`_keeps_alive` says why). README: "Deadlines under overload".

Only the synchronous routes are shed this way; bulk submissions and reads keep their own,
slower limits (the body must be read to answer them). Measured in `python -m bench.chaos`.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.config import ApiSettings
from api.errors import ServiceUnavailable
from api.serving.deadline import ARRIVED

Refusal = Callable[[], ServiceUnavailable | None]

SHED_ROUTES = {
    b"/v1/predict": "/v1/predict",
    b"/v1/postcodes": "/v1/postcodes",
}
"""Synchronous routes by raw path -> the route template their metrics are counted under."""
_V2_INFER = (b"/v2/models/", b"/infer")
V2_INFER_TEMPLATES = (
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
)

KEEP, CLOSE = "keep", "close"
"""A refused request's connection: kept for the next request, or closed (`_keeps_alive`)."""
LINGER_S = 2.0
"""How long a shed connection stays half-open to swallow the rest of its request."""

STANDING_INTERVAL_S = 0.1
"""CoDel's interval: a queue whose every request read for 100 ms waited more than the target
(`DIGITS_SHED_STANDING_AFTER_S`, 20 ms) is standing. At the closed-loop peak (256 keep-alive
clients) requests waited p50 4 ms, p90 16 ms, and none was shed (DESIGN "A standing queue")."""

_TCP_INFO_LEN = 104
_LAST_DATA_RECV = struct.Struct("=I")
_LAST_DATA_RECV_OFFSET = 52
"""`struct tcp_info`: 8 bytes of u8 fields, 9 u32s, last_data_sent, last_ack_sent, then
`tcpi_last_data_recv` (milliseconds) at byte 52 (linux/tcp.h, stable since 2.6)."""


def waited_s(sock: socket.socket | None) -> float:
    """Seconds since the kernel last received data on `sock` (0 where it cannot say)."""
    if sock is None:
        return 0.0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except (OSError, AttributeError, ValueError):
        return 0.0
    if len(info) < _LAST_DATA_RECV_OFFSET + 4:
        return 0.0
    return _LAST_DATA_RECV.unpack_from(info, _LAST_DATA_RECV_OFFSET)[0] / 1000


class StandingQueue:
    """Whether every request read for `interval_s` waited longer than `target_s`.

    CoDel's test (Nichols & Jacobson, "Controlling Queue Delay", 2012), also what Facebook's
    servers use to cut a queue's timeout from seconds to milliseconds ("Fail at Scale", 2015):
    a burst drains within the interval and is served; a queue fed faster than it is read never
    does, and then waiting longer only makes every answer later. One request that waited less
    than the target ends it, and so does a quiet interval (nothing left to read late).
    """

    def __init__(self, target_s: float, interval_s: float = STANDING_INTERVAL_S) -> None:
        self.target_s, self.interval_s = target_s, interval_s
        self._above_since: float | None = None
        self._last_seen = float("-inf")

    def observe(self, waited: float, now: float) -> None:
        quiet = now - self._last_seen >= self.interval_s
        self._last_seen = now
        if waited < self.target_s:
            self._above_since = None
        elif quiet or self._above_since is None:
            self._above_since = now

    def standing(self, now: float) -> bool:
        return (
            self._above_since is not None
            and now - self._above_since >= self.interval_s
            and now - self._last_seen < self.interval_s
        )


def shed_route(raw_path: bytes) -> str | None:
    """The route template of a synchronous route, None for every other path."""
    path = raw_path.split(b"?", 1)[0]
    template = SHED_ROUTES.get(path)
    if template is not None:
        return template
    if path.startswith(_V2_INFER[0]) and path.endswith(_V2_INFER[1]):
        return V2_INFER_TEMPLATES[1] if b"/versions/" in path else V2_INFER_TEMPLATES[0]
    return None


def refusal_response(refusal: ServiceUnavailable, v2: bool, keep_alive: bool = False) -> bytes:
    """The whole HTTP answer for `refusal`, in the shape the app's error handlers give it."""
    error = refusal.body()
    body = orjson.dumps({"error": error["error"]["message"]} if v2 else error)
    lines = [
        b"HTTP/1.1 503 Service Unavailable",
        b"content-type: application/json",
        b"retry-after: " + (refusal.headers or {}).get("Retry-After", "1").encode(),
        b"content-length: " + str(len(body)).encode(),
    ]
    if not keep_alive:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class DeadlineHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that stamps true arrival times and sheds sync work early.

    `DIGITS_SHED_AFTER_S` comes from the app's settings through `configure` (one place: api.config);
    `refusal` is the running app's own cheap admission check, set by its lifespan.
    """

    shed_after_s: float = ApiSettings.model_fields["shed_after_s"].default
    shed_standing_after_s: float = ApiSettings.model_fields["shed_standing_after_s"].default
    first_requests = StandingQueue(shed_standing_after_s)
    """The first request of each new connection: its wait includes the accept queue's."""
    requests = StandingQueue(shed_standing_after_s)
    """Every request: a standing queue in the receive buffers of keep-alive connections. Two
    tests, because under overload with new connections the kept-alive ones are still read at
    once (measured: 0 ms), which would end a single test over all requests."""
    on_shed = None
    """Called with (route template, seconds waited, error code) of each shed request."""
    refusal: Refusal | None = None
    """What admission would answer now without a Redis round trip; None: admit."""

    @classmethod
    def configure(cls, shed_after_s: float, shed_standing_after_s: float, on_shed) -> None:
        cls.shed_after_s = shed_after_s
        cls.shed_standing_after_s = target = min(shed_standing_after_s, shed_after_s)
        cls.first_requests, cls.requests = StandingQueue(target), StandingQueue(target)
        cls.on_shed = staticmethod(on_shed)

    @classmethod
    def admit_with(cls, refusal: Refusal | None) -> None:
        cls.refusal = staticmethod(refusal) if refusal is not None else None  # type: ignore[assignment]

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._socket = transport.get_extra_info("socket")
        self._shedding: str | None = None
        """While a refused request's body is still arriving: KEEP or CLOSE."""
        self._first = True

    def data_received(self, data: bytes) -> None:
        if self._shedding == CLOSE:
            return  # the rest of a refused request: the connection is closing
        super().data_received(data)

    def on_headers_complete(self) -> None:
        waited = waited_s(self._socket)
        now = self.loop.time()
        self.scope[ARRIVED] = now - waited  # type: ignore[literal-required]
        first, self._first = self._first, False
        self.requests.observe(waited, now)
        if first:
            self.first_requests.observe(waited, now)
        route = shed_route(self.url)
        # NOTE: never while an earlier request of this connection is still being answered
        # (HTTP pipelining): a 503 written now would overtake that request's answer.
        if route is not None and (self.cycle is None or self.cycle.response_complete):
            behind = waited > self.wait_limit(now)
            refusal = self._waited_refusal(waited) if behind else self._admission_refusal()
            if refusal is not None:
                self._shed(route, waited, refusal, keep=not behind and self._keeps_alive())
                return
        super().on_headers_complete()

    @classmethod
    def wait_limit(cls, now: float) -> float:
        """How long a sync request may have waited unread: `DIGITS_SHED_AFTER_S` in a burst,
        `DIGITS_SHED_STANDING_AFTER_S` while the queue in front of this process stands.
        Under overload a queue settles at whatever wait it is allowed: with 0.25 s for every
        request, refusals under 2,000 req/s of new connections took p50 ≈ 400 ms
        (DESIGN "A standing queue")."""
        if cls.first_requests.standing(now) or cls.requests.standing(now):
            return cls.shed_standing_after_s
        return cls.shed_after_s

    @staticmethod
    def _waited_refusal(waited: float) -> ServiceUnavailable:
        return ServiceUnavailable(
            "overloaded",
            f"this request waited {waited:.2f}s before the service could read it; retry",
        )

    def _admission_refusal(self) -> ServiceUnavailable | None:
        return self.refusal() if self.refusal is not None else None

    def on_body(self, body: bytes) -> None:
        if self._shedding is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._shedding is None:
            super().on_message_complete()
        elif self._shedding == KEEP:
            # The refused request's body is read to its end: the connection serves the next
            # request as after any answer (keep-alive timer armed, pipelined work resumed).
            self._shedding = None
            self.on_response_complete()

    def _keeps_alive(self) -> bool:
        """Whether the connection can go on after an early refusal: an HTTP/1.1 keep-alive
        request whose body will come whether or not it is answered (no `Expect: 100-continue`,
        where the client waits and would never send it).

        Only admission's refusals keep it: a request that waited past `DIGITS_SHED_AFTER_S` closes
        its connection. Kept, its client's next requests would be read before the new
        connections waiting in the accept queue (uvloop accepts about one per loop pass),
        and those waited 2-3x longer (bench.chaos overload 3x, measured side by side; DESIGN
        "Refusing early")."""
        return (
            self.parser.get_http_version() == "1.1"
            and self.parser.should_keep_alive()
            and not self.expect_100_continue
        )

    def _shed(self, route: str, waited: float, refusal: ServiceUnavailable, keep: bool) -> None:
        self._shedding = KEEP if keep else CLOSE
        self.transport.write(refusal_response(refusal, route.startswith("/v2/"), keep_alive=keep))
        if not keep:
            # A lingering close, as nginx does: closing with the body still unread would
            # send a RST, which can destroy the 503 before the client reads it (the soak saw
            # 15 ConnectionResetErrors). Half-close, discard what still arrives, close on the
            # client's EOF or after LINGER_S.
            if self.transport.can_write_eof():
                self.transport.write_eof()
                self.loop.call_later(LINGER_S, self.transport.close)
            else:
                self.transport.close()
        if self.on_shed is not None:
            self.on_shed(route, waited, refusal.code)
