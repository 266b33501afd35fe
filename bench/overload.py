"""`python -m bench.overload`: how fast a sustained overload is refused, by the kind of connection.

Sync `/v1/predict` at a fixed rate (open loop) with a new connection whenever no kept-alive one
is idle, on fresh throw-away stacks (bench.stack), one per arm and round, the arms alternating
so that the machine's drift falls on both. Each request is timed by the client from when it
was due and sorted by status and by whether it opened its connection: under overload with new
connections the refusal that matters waits in the kernel's accept queue (docs/DESIGN.md,
"A standing queue"). An arm is a name and the settings it changes, e.g.
`--arm "burst limit only=DIGITS_SHED_STANDING_AFTER_S=0.25"`; the default arm changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import uvloop

from bench.http import Client
from bench.loadgen import open_loop
from bench.samples import digit_png
from bench.stack import Stack, StackConfig


@dataclass(frozen=True)
class Outcome:
    new_connection: bool
    status: int | str
    seconds: float
    """From when the request was due to its answer (or its failure)."""


async def _offer(port: int, rate: float, seconds: float) -> list[Outcome]:
    bodies = [digit_png(d, seed=d) for d in range(10)]
    client = Client("127.0.0.1", port, limit=int(rate * 5), timeout=15.0)
    loop = asyncio.get_running_loop()
    out: list[Outcome] = []

    async def post(client: Client, path: str, body: bytes, content_type: str, due: float, tally):
        """Sends as bench.loadgen's own does; records its outcome here, not in the tally."""
        new = not client.would_reuse()
        try:
            status, _ = await client.request("POST", path, body, content_type)
        except Exception as exc:  # refused, reset, timed out: an outcome of its own kind
            status = type(exc).__name__
        out.append(Outcome(new, status, loop.time() - due))

    try:
        await open_loop(client, "/v1/predict", bodies, "image/png", rate, seconds, post=post)
    finally:
        client.close()
    return out


def summarise(outcomes: list[Outcome]) -> dict[str, str]:
    """'new 503' -> 'n, p50 / p99 ms' for each kind of connection and status."""
    groups: dict[str, list[float]] = defaultdict(list)
    for o in outcomes:
        groups[f"{'new' if o.new_connection else 'reused'} {o.status}"].append(o.seconds * 1e3)
    return {
        key: f"{len(ms):,}, p50 {np.percentile(ms, 50):,.0f} / p99 {np.percentile(ms, 99):,.0f} ms"
        for key, ms in sorted(groups.items())
    }


def _arm(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    name, _, settings = text.partition("=")
    pairs = tuple(tuple(item.split("=", 1)) for item in settings.split(",") if item)
    return name, pairs  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="req/s offered")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--arm",
        action="append",
        type=_arm,
        help='"name=SETTING=value,SETTING=value" (repeatable); default: the defaults only',
    )
    args = parser.parse_args(argv)
    arms = [("defaults", ())] + (args.arm or [])
    for round_ in range(1, args.rounds + 1):
        for name, env in arms:
            stack = Stack.start(StackConfig(env=env))
            try:
                outcomes = uvloop.run(_offer(stack.port, args.rate, args.seconds))
            finally:
                stack.stop()
            print(f"round {round_}, {name} ({args.rate:,.0f} req/s, {args.seconds:g} s):")
            for key, text in summarise(outcomes).items():
                print(f"  {key:<14} {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
