"""Peers the benchmark drives side by side with this service (issue 16): `bench.peers.triton`.

A peer runs in its own virtual environment under `var/peers/` (installed on first use), never
in the project's `.venv`: its dependencies (PyTriton pins numpy < 2) would clash with ours.
"""
