"""Realistic evaluation sets built from MNIST, and a runner against the service or offline.

`python -m evaluation generate --out DIR --split test|train` then
`python -m evaluation run --sets DIR (--url URL | --offline)`. See docs/parts/imaging.md.
"""
