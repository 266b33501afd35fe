"""Redis memory for the fault tests and `make chaos`: what is used, and filling it up."""

from __future__ import annotations


def used_memory(client) -> int:
    return int(client.info("memory")["used_memory"])


def fill(client, leave_bytes: int = 0) -> int:
    """Make Redis full: junk keys, then `maxmemory` just below what is used (noeviction)."""
    client.config_set("maxmemory", "0")
    for index in range(600):
        client.set(f"junk:{index}", b"x" * 10_000)
    limit = used_memory(client) - 1_000_000 + leave_bytes
    client.config_set("maxmemory", str(limit))
    return limit
