"""Load shedding where it is cheap: in the HTTP protocol, before a request becomes ASGI work.

Under overload a request waits where no handler sees it: in the listening socket's accept
queue and in its connection's receive buffer, until the event loop gets to it. The kernel
knows how long: TCP_INFO's `tcpi_last_data_recv` is the time since the last bytes arrived
on the connection. `DeadlineHttpProtocol` (uvicorn's httptools protocol plus this) reads it
when a request's headers are parsed, so

- every request's scope carries its true arrival time (`api.deadline.ARRIVED`): the sync
  deadline counts from there, not from when the process got around to it;
- a synchronous request that already waited `SHED_AFTER_S` is answered 503 `overloaded`
  from prebuilt bytes and its connection closed (tens of microseconds, no body read, no
  task): far cheaper than the work it avoids, so the queue in front of the process drains
  instead of growing, and refusals stay fast (README: "Deadlines under overload").

Only the synchronous routes are shed this way; bulk submissions and reads keep their own,
slower limits (the body must be read to answer them). Measured in `python -m bench.chaos`.
"""

from __future__ import annotations

import socket
import struct

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.deadline import ARRIVED

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

LINGER_S = 2.0
"""How long a shed connection stays half-open to swallow the rest of its request."""

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


def shed_route(raw_path: bytes) -> str | None:
    """The route template of a synchronous route, None for every other path."""
    path = raw_path.split(b"?", 1)[0]
    template = SHED_ROUTES.get(path)
    if template is not None:
        return template
    if path.startswith(_V2_INFER[0]) and path.endswith(_V2_INFER[1]):
        return V2_INFER_TEMPLATES[1] if b"/versions/" in path else V2_INFER_TEMPLATES[0]
    return None


def shed_response(waited: float, v2: bool) -> bytes:
    message = f"this request waited {waited:.2f}s before the service could read it; retry"
    error = message if v2 else {"code": "overloaded", "message": message}
    body = orjson.dumps({"error": error})
    head = (
        b"HTTP/1.1 503 Service Unavailable\r\n"
        b"content-type: application/json\r\n"
        b"retry-after: 1\r\n"
        b"connection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


class DeadlineHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that stamps true arrival times and sheds stale sync work.

    `SHED_AFTER_S` comes from the app's settings through `configure` (one place: api.config).
    """

    shed_after_s: float = 0.5
    on_shed = None
    """Called with (route template, seconds waited) of each shed request: metrics count it."""

    @classmethod
    def configure(cls, shed_after_s: float, on_shed) -> None:
        cls.shed_after_s = shed_after_s
        cls.on_shed = staticmethod(on_shed)

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._socket = transport.get_extra_info("socket")
        self._shedding = False

    def data_received(self, data: bytes) -> None:
        if self._shedding:
            return  # the rest of a refused request: the connection is closing
        super().data_received(data)

    def on_headers_complete(self) -> None:
        waited = waited_s(self._socket)
        self.scope[ARRIVED] = self.loop.time() - waited  # type: ignore[literal-required]
        if waited > self.shed_after_s:
            route = shed_route(self.url)
            if route is not None:
                self._shed(route, waited)
                return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._shedding:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._shedding:
            super().on_message_complete()

    def _shed(self, route: str, waited: float) -> None:
        self._shedding = True
        self.transport.write(shed_response(waited, route.startswith("/v2/")))
        # A lingering close, as nginx does: closing with the body still unread would send
        # a RST, which can destroy the 503 before the client reads it (the soak saw 15
        # ConnectionResetErrors). Half-close, discard what still arrives, close on the
        # client's EOF or after LINGER_S.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()
        if self.on_shed is not None:
            self.on_shed(route, waited)
