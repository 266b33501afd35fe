"""Several "hosts" on one machine: a network namespace each, joined by bridges.

Each host gets one interface per network it is on; `cut` takes a host's link down from the
outside, so its packets vanish without a FIN or RST, as when a host loses its network. Needs
root and `ip` (iproute2); `available()` says why not where they are missing.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from harness.processes import ManagedProcess


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def available() -> str | None:
    """None if namespaces can be made here, else the reason."""
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"dgprobe{os.getpid() % 100000}"
    made = _ip("netns", "add", name, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


@dataclass
class Hosts:
    """Bridges `networks` (name -> /24 prefix such as '10.241.1') and hosts on them."""

    tag: str = field(default_factory=lambda: f"dg{os.getpid() % 10000}")
    networks: dict[str, str] = field(default_factory=dict)
    addresses: dict[tuple[str, str], str] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)
    _hosts: list[str] = field(default_factory=list)

    def network(self, name: str) -> str:
        """A bridge with a free-looking /24; the test process (root namespace) gets `.254`."""
        prefix = f"10.{random.randint(200, 250)}.{random.randint(1, 250)}"
        bridge = self._bridge(name)
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{prefix}.254/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        self.networks[name] = prefix
        return prefix

    def host(self, name: str, on: dict[str, int]) -> None:
        """Namespace `name` with an address `.<n>` on each network of `on`."""
        ns = self.ns(name)
        _ip("netns", "add", ns)
        self._hosts.append(name)
        _ip("-n", ns, "link", "set", "lo", "up")
        for index, (network, n) in enumerate(on.items()):
            outside, inside = self._link(name, network), f"eth{index}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns)
            _ip("link", "set", outside, "master", self._bridge(network), "up")
            address = f"{self.networks[network]}.{n}"
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", inside)
            _ip("-n", ns, "link", "set", inside, "up")
            self.addresses[(name, network)] = address

    def address(self, host: str, network: str) -> str:
        return self.addresses[(host, network)]

    def run(self, host: str, name: str, argv: list[str], env: dict[str, str]) -> ManagedProcess:
        """`argv` inside `host`'s namespace (same files, same hostname, its own network)."""
        process = ManagedProcess(name, ["ip", "netns", "exec", self.ns(host), *argv], env)
        self.processes.append(process)
        return process

    def python(self, host: str, name: str, module: str, env: dict[str, str]) -> ManagedProcess:
        return self.run(host, name, [sys.executable, "-m", module], env)

    def cut(self, host: str, network: str) -> None:
        """`host` silently off `network`: no FIN, no RST, its packets just stop arriving."""
        _ip("link", "set", self._link(host, network), "down")

    def restore(self, host: str, network: str) -> None:
        _ip("link", "set", self._link(host, network), "master", self._bridge(network), "up")

    def close(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.stop(timeout=10)
        for host in self._hosts:
            _ip("netns", "del", self.ns(host), check=False)
        for network in self.networks:
            _ip("link", "del", self._bridge(network), check=False)

    def ns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def _bridge(self, network: str) -> str:
        return f"{self.tag}{network}"[:15]

    def _link(self, host: str, network: str) -> str:
        return f"{self.tag}{host}{network[0]}"[:15]
