"""A minimal HTTP/1.1 keep-alive client for the load generator (asyncio + httptools).

Why not aiohttp: the generator shares the 2 cores with the service it measures, and every
CPU-millisecond it spends is taken from the service; this client only writes prebuilt request
bytes and parses the status line and body, at a fraction of aiohttp's cost per request
(measured with `python -m bench.selfcheck`).
"""

from __future__ import annotations

import asyncio

import httptools


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.chunks: list[bytes] = []
        self.closed = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        status, body = self.parser.get_status_code(), b"".join(self.chunks)
        self.chunks = []
        self.keep_alive = self.parser.should_keep_alive()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("connection closed by the server"))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    def send(self, data: bytes) -> asyncio.Future:
        self.waiter = asyncio.get_running_loop().create_future()
        self.waiter.add_done_callback(_consume)
        self.transport.write(data)
        return self.waiter


def _consume(future: asyncio.Future) -> None:
    """Mark a failure as seen: an abandoned request's future has no one left to await it."""
    if not future.cancelled():
        future.exception()


class Client:
    """`await client.request("POST", "/v1/predict", body, "image/png")` -> (status, body)."""

    def __init__(self, host: str, port: int, limit: int = 1000, timeout: float = 15.0) -> None:
        self._host, self._port, self._timeout = host, port, timeout
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(limit)
        self._heads: dict[tuple, bytes] = {}

    def _head(
        self,
        method: str,
        path: str,
        content_type: str | None,
        length: int,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> bytes:
        key = (method, path, content_type, length, extra)
        head = self._heads.get(key)
        if head is None:
            lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
            if content_type:
                lines.append(f"Content-Type: {content_type}")
            lines += [f"{name}: {value}" for name, value in extra]
            lines.append(f"Content-Length: {length}")
            head = ("\r\n".join(lines) + "\r\n\r\n").encode()
            self._heads[key] = head
        return head

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> tuple[int, bytes]:
        """`headers`: extra request headers, e.g. KServe-v2's Inference-Header-Content-Length."""
        data = self._head(method, path, content_type, len(body), headers) + body
        async with self._slots:
            connection = await self._connection()
            try:
                async with asyncio.timeout(self._timeout):
                    result = await connection.send(data)
            except BaseException:
                connection._fail(TimeoutError("request abandoned"))
                raise
            if connection.keep_alive and not connection.closed:
                self._idle.append(connection)
            else:
                connection.transport.close()
            return result

    def would_reuse(self) -> bool:
        """Whether the next request would go on a kept-alive connection, not a new one."""
        return any(not c.closed and not c.transport.is_closing() for c in self._idle)

    async def _connection(self) -> _Connection:
        """An idle keep-alive connection the server has not closed meanwhile, else a new one.

        uvicorn closes connections idle for 5 s; writing on one is not a server error (it was
        counted as one, `RuntimeError`, ≈ 0.4 % of requests at 100 req/s, before this check).
        """
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and not connection.transport.is_closing():
                return connection
        return await self._open()

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, self._host, self._port)
        return connection

    def close(self) -> None:
        for connection in self._idle:
            connection.transport.close()
        self._idle.clear()
