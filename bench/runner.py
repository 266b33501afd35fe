"""Runs one load step in the separate load-generator process and measures CPU meanwhile."""

from __future__ import annotations

import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.cpu import CpuMeter

ROOT = Path(__file__).resolve().parents[1]


def run_load(spec: dict[str, Any], pids: dict[str, int], timeout: float = 600) -> dict[str, Any]:
    """One load step: the result of `bench.loadgen` plus `cpu` (cores used per component)."""
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as handle:
        pickle.dump(spec, handle)
        spec_path = handle.name
    try:
        meter = CpuMeter(pids)
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", spec_path],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # NOTE: the generator says "ready" once imported, so CPU is measured over the load only.
        process.stdout.readline()
        meter.start()
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        cpu = meter.stop()
    finally:
        Path(spec_path).unlink(missing_ok=True)
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed ({process.returncode}):\n{err.decode()}")
    result = orjson.loads(out.splitlines()[-1])
    window = result.get("elapsed_s") or result.get("drain_s") or 0
    cpu["loadgen"] = round(result["loadgen_cpu_s"] / window, 3) if window else None
    result["cpu"] = cpu
    return result


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-field median over repeats (numbers and nested dicts of numbers); others: first run."""
    merged = _median(runs)
    merged["repeats"] = len(runs)
    return merged


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key, first in runs[0].items():
        values = [run.get(key) for run in runs]
        if isinstance(first, bool) or not isinstance(first, int | float | dict):
            merged[key] = first
        elif isinstance(first, dict):
            merged[key] = _median([v for v in values if isinstance(v, dict)]) if first else {}
        else:
            numbers = [v for v in values if isinstance(v, int | float)]
            merged[key] = statistics.median(numbers) if numbers else None
    return merged
