"""The benchmark suite: `python -m bench` (or `make bench`).

See README "Performance" and docs/DESIGN.md "Performance".
"""
