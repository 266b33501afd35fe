"""`python -m bench.selfcheck`: can the load generator itself emit the ladder's top rate?

Points the generator at a trivial HTTP server (a fixed 200 answer, no framework) in its own
process, so what is measured is the generator: achieved rate, how late requests left
(send lag) and the generator's CPU. If it cannot offer a rate here, it cannot offer it to
the service either, and that step of the ladder would measure the client.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys

import uvloop

from bench.runner import ROOT, run_load
from harness.processes import free_port, wait_until

_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
    b'Connection: keep-alive\r\n\r\n{"ok":true}'
)


class _Fixed(asyncio.Protocol):
    """Answers every request on the connection (one per received body end) with `_ANSWER`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        # NOTE: the generator sends one request at a time per connection, each with a
        # Content-Length body: answer once the declared body has arrived.
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            self.transport.write(_ANSWER)


def serve(port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Fixed, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


def check(rate: float, seconds: float) -> dict:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.selfcheck", "--serve", str(port)], cwd=ROOT
    )
    try:
        wait_until(lambda: _connectable(port), 10, "trivial server")
        body = (ROOT / "tests" / "data" / "digit7.png").read_bytes()
        spec = {"mode": "rate", "url": f"http://127.0.0.1:{port}", "bodies": [body]}
        spec |= {"content_type": "image/png", "rate": rate, "duration": seconds}
        return run_load(spec, {"server": server.pid})
    finally:
        server.terminate()
        server.wait(10)


def _connectable(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.selfcheck")
    parser.add_argument("--rate", type=float, default=1500)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    result = check(args.rate, args.seconds)
    print(
        f"offered {args.rate:g} req/s -> achieved {result['achieved_rps']:.0f} req/s, "
        f"send lag p99 {result['send_lag_p99_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
        f"errors {result['errors']}, generator CPU {result['cpu']['loadgen']:.2f} cores "
        f"(trivial server {result['cpu']['server']:.2f})"
    )


if __name__ == "__main__":
    main()
