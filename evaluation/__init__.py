"""Evaluation sets (realistic MNIST renderings; robustness sets from held-out handwriting
fonts) and a runner against the service or offline.

`python -m evaluation generate|robust --out DIR --split ...` then
`python -m evaluation run --sets DIR (--url URL | --offline)`.
See README "Evaluation" and "Robustness sets".
"""
