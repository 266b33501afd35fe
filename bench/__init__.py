"""The benchmark suite: `python -m bench` (or `make bench`). See docs/parts/performance.md."""
