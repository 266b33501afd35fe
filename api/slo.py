"""The numbers behind `/v1/slo` and the dashboard, from the per-minute counts in Redis.

Windows are whole minutes (the current one included): 5 min, 1 h, 24 h. Percentiles are
interpolated inside latency buckets, like Prometheus' `histogram_quantile`. Drift compares the
predicted-class mix with the model's own predictions on its test set (`metadata.json`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from common.registry import RegistryError, resolve
from common.rollup import CONFIDENCE_BINS, HOUR_PREFIX, LATENCY_BUCKETS, ROLLUP_PREFIX

WINDOWS = {"5m": 5, "1h": 60, "24h": 1440}
"""Window name -> minutes."""
HOURS = 24
DIGITS = [str(d) for d in range(10)]
_EPSILON = 1e-4
"""Floor for empty classes in PSI: a class never seen must not make it infinite."""


@dataclass(frozen=True)
class Objectives:
    availability: float = 0.9999
    latency_s: float = 2.0
    drift_psi: float = 0.2
    drift_min_samples: int = 200


@dataclass(frozen=True)
class Reference:
    model: str
    version: str
    classes: list[float]
    confidence: list[float]


def load_reference(models_dir: str, name: str, alias: str = "production") -> Reference | None:
    """The training-time distributions the served model's metadata records (pure JSON)."""
    try:
        path = resolve(models_dir, name, alias)
        metadata = orjson.loads((path / "metadata.json").read_bytes())
    except (OSError, ValueError, LookupError, RegistryError):
        return None
    reference = metadata.get("reference") or {}
    classes = reference.get("test_predicted_class_distribution") or reference.get(
        "train_label_distribution"
    )
    if not classes or len(classes) != 10:
        return None
    confidence = (reference.get("test_confidence_histogram") or {}).get("fractions") or []
    return Reference(name, path.name, [float(p) for p in classes], [float(p) for p in confidence])


@dataclass
class Counts:
    """Per-minute (last hour) and per-hour (last day) counts, newest first."""

    minutes: list[dict[str, int]]
    hours: list[dict[str, int]]


class CountsReader:
    """Reads the rollup hashes, re-reading only the ones that can still change.

    A minute or hour more than one step old gets no more flushes, so it is read once and kept;
    each call reads the two newest minutes and hours (plus any not seen yet).
    """

    def __init__(self) -> None:
        self._minutes: dict[int, dict[str, int]] = {}
        self._hours: dict[int, dict[str, int]] = {}

    async def read(self, client: Redis, now: float | None = None) -> Counts:
        now = time.time() if now is None else now
        minute, hour = int(now // 60), int(now // 3600)
        wanted_minutes = range(minute, minute - WINDOWS["1h"], -1)
        wanted_hours = range(hour, hour - HOURS, -1)
        stale_minutes = [m for m in wanted_minutes if m >= minute - 1 or m not in self._minutes]
        stale_hours = [h for h in wanted_hours if h >= hour - 1 or h not in self._hours]
        async with client.pipeline(transaction=False) as pipe:
            for m in stale_minutes:
                pipe.hgetall(f"{ROLLUP_PREFIX}{m}")
            for h in stale_hours:
                pipe.hgetall(f"{HOUR_PREFIX}{h}")
            replies = await pipe.execute()
        decoded = [{k.decode(): int(v) for k, v in reply.items()} for reply in replies]
        self._minutes.update(zip(stale_minutes, decoded[: len(stale_minutes)], strict=True))
        self._hours.update(zip(stale_hours, decoded[len(stale_minutes) :], strict=True))
        self._minutes = {m: self._minutes[m] for m in wanted_minutes}
        self._hours = {h: self._hours[h] for h in wanted_hours}
        return Counts(list(self._minutes.values()), list(self._hours.values()))


def _sum(parts: list[dict[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for part in parts:
        for field, value in part.items():
            totals[field] = totals.get(field, 0) + value
    return totals


def windows_of(counts: Counts) -> dict[str, dict[str, int]]:
    """Summed counts per window: 5 min and 1 h from minutes, 24 h from the 24 newest hours
    (the current, partial hour included: 23 to 24 hours)."""
    return {
        "5m": _sum(counts.minutes[: WINDOWS["5m"]]),
        "1h": _sum(counts.minutes[: WINDOWS["1h"]]),
        "24h": _sum(counts.hours),
    }


def timeline(minutes: list[dict[str, int]], now: float, length: int = 60) -> list[dict[str, int]]:
    """Oldest-first requests, 5xx and predictions per minute, for the throughput chart."""
    current = int(now // 60)
    points = []
    for back in range(min(length, len(minutes)) - 1, -1, -1):
        minute = minutes[back]
        predictions = sum(n for key, n in minute.items() if key.startswith("pred:"))
        points.append(
            {
                "minute": (current - back) * 60,
                "requests": minute.get("req", 0),
                "errors_5xx": minute.get("class:5xx", 0),
                "predictions": predictions,
            }
        )
    return points


def quantile(
    q: float, counts: list[int], edges: tuple[float, ...] = LATENCY_BUCKETS
) -> float | None:
    """The q-quantile of bucketed counts (`counts[i]` falls in (edges[i-1], edges[i]])."""
    total = sum(counts)
    if not total:
        return None
    rank, seen = q * total, 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index >= len(edges):  # the +Inf bucket: the highest finite edge, as Prometheus
                return edges[-1]
            lower = edges[index - 1] if index else 0.0
            return lower + (edges[index] - lower) * (rank - seen) / count
        seen += count
    return edges[-1]


def drift(counts: list[int], reference: list[float], objectives: Objectives) -> dict[str, Any]:
    """Population stability index and chi-square of the predicted classes vs the reference."""
    samples = sum(counts)
    result: dict[str, Any] = {
        "samples": samples,
        "reference": [round(p, 6) for p in reference],
        "observed": [round(c / samples, 6) for c in counts] if samples else None,
        "psi": None,
        "chi_square": None,
        "threshold": objectives.drift_psi,
        "min_samples": objectives.drift_min_samples,
    }
    if samples:
        observed = [max(c / samples, _EPSILON) for c in counts]
        expected = [max(p, _EPSILON) for p in reference]
        psi = sum((o - e) * math.log(o / e) for o, e in zip(observed, expected, strict=True))
        chi = sum(
            (c - samples * e) ** 2 / (samples * e) for c, e in zip(counts, expected, strict=True)
        )
        result["psi"], result["chi_square"] = round(psi, 6), round(chi, 3)
    if samples < objectives.drift_min_samples:
        result["state"] = "insufficient_data"
    else:
        result["state"] = "drifting" if result["psi"] > objectives.drift_psi else "stable"
    result["drifting"] = result["state"] == "drifting"
    return result


def summarize(
    counts: dict[str, int], minutes: int, objectives: Objectives, reference: Reference | None
) -> dict[str, Any]:
    """One window's SLO report from its summed counts."""
    requests = counts.get("req", 0)
    errors = counts.get("class:5xx", 0)
    error_rate = errors / requests if requests else 0.0
    budget = 1.0 - objectives.availability
    latency = [counts.get(f"lat:{i}", 0) for i in range(len(LATENCY_BUCKETS) + 1)]
    edges = zip(latency, LATENCY_BUCKETS, strict=False)  # the +Inf count has no edge
    within = sum(c for c, edge in edges if edge <= objectives.latency_s)
    classes = [counts.get(f"pred:{d}", 0) for d in DIGITS]
    blanks = counts.get("pred:none", 0)
    predictions = sum(classes) + blanks
    batches = counts.get("batches", 0)
    report: dict[str, Any] = {
        "minutes": minutes,
        "requests": requests,
        "errors_5xx": errors,
        "status_classes": {
            name: counts.get(f"class:{name}", 0) for name in ("2xx", "3xx", "4xx", "5xx")
        },
        "availability": round(1.0 - error_rate, 6) if requests else None,
        "error_budget_remaining": round(1.0 - error_rate / budget, 4) if requests else 1.0,
        "latency_s": {
            name: _round(quantile(q, latency))
            for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
        },
        "latency_within_objective": round(within / requests, 6) if requests else None,
        "latency_buckets": {"edges": list(LATENCY_BUCKETS), "counts": latency},
        "throughput_rps": round(requests / (minutes * 60), 4),
        "sync_fallbacks": counts.get("fallback", 0),
        "rejections": {
            key.removeprefix("rej:"): n
            for key, n in sorted(counts.items())
            if key.startswith("rej:")
        },
        "predictions": predictions,
        "predictions_by_digit": dict(zip(DIGITS, classes, strict=True)) | {"none": blanks},
        "needs_review": counts.get("review", 0),
        "review_rate": round(counts.get("review", 0) / predictions, 6) if predictions else None,
        "batches": batches,
        "mean_batch_size": round(counts.get("batch_images", 0) / batches, 2) if batches else None,
        "duplicate_results": counts.get("dup", 0),
        "confidence_histogram": {
            "bin_width": 1.0 / CONFIDENCE_BINS,
            "counts": [counts.get(f"conf:{i}", 0) for i in range(CONFIDENCE_BINS)],
            "reference": reference.confidence if reference else None,
        },
        "drift": drift(classes, reference.classes, objectives) if reference else None,
    }
    return report


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
