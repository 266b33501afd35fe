"""The numbers behind `/v1/slo` and the dashboard, read from Prometheus' HTTP API.

Prometheus is the only store of counts: the API and the workers count with prometheus-client,
Prometheus scrapes them, and the SLIs are its recording rules
(deploy/prometheus/rules/recording.yml). This module asks instant queries at one evaluation
time over the exact windows 5m, 1h and 1d, and only reshapes the answers: no count, window or
SLI is computed here. Drift (PSI) is computed from the answers: the predicted-class counts
against the reference the workers export from the model they serve, and against the same
counts a day earlier (a sorting office's normal mix, so "changed" is not "not uniform").

Prometheus down or slow: every call gives up after `timeout_s` and the report says which
parts are unknown and why; it never waits and never shows 100 %.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import httpx

from common.reviews import wilson

WINDOWS = {"5m": ("5m", 300), "1h": ("1h", 3600), "24h": ("1d", 86400)}
"""Window name -> (PromQL range, seconds)."""
DIGITS = [str(d) for d in range(10)]
_EPSILON = 1e-4
"""Floor for empty classes in PSI: a class never seen must not make it infinite."""
TIMEOUT_S = 0.25
"""One Prometheus query gives up after this: the dashboard says "unknown" instead of waiting."""


class PrometheusUnavailable(Exception):
    """Prometheus did not answer in time, or answered with an error."""


@dataclass(frozen=True)
class DriftRule:
    psi: float = 0.2
    min_samples: int = 200


class Prometheus:
    """A small async client for instant and range queries."""

    def __init__(self, url: str, timeout_s: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout_s)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str, params: dict[str, str]) -> list[dict]:
        try:
            response = await self._http.get(path, params=params)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusUnavailable(f"{type(exc).__name__} from {self.url}") from exc
        if body.get("status") != "success":
            raise PrometheusUnavailable(f"{response.status_code}: {body.get('error', body)}")
        return body["data"]["result"]

    async def query(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of each series of an instant vector; NaN values left out."""
        result = await self._get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})
        series = ((item["metric"], float(item["value"][1])) for item in result)
        return [(labels, value) for labels, value in series if not math.isnan(value)]

    async def query_range(
        self, expr: str, start: float, end: float, step: float
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)}
        result = await self._get("/api/v1/query_range", params)
        return [
            (item["metric"], [(float(t), float(v)) for t, v in item["values"]]) for item in result
        ]


def per_window(template: str) -> str:
    """One query for the three windows: `template` with `{w}` = 5m, 1h, 1d, each result
    labelled `window` = 5m / 1h / 24h."""
    return " or ".join(
        f'label_replace({template.format(w=rng)}, "window", "{name}", "", "")'
        for name, (rng, _) in WINDOWS.items()
    )


def named(expressions: dict[str, str]) -> str:
    """Several scalar-like expressions in one query, each labelled `stat` = its name."""
    return " or ".join(
        f'label_replace(({expr}), "stat", "{name}", "", "")' for name, expr in expressions.items()
    )


QUERIES = {
    "requests": per_window("digits:sli_requests:increase{w}"),
    "ratios": " or ".join(
        f'label_replace(label_replace(digits:sli_{kind}:ratio_rate{rng}, "window", "{name}", "",'
        f' ""), "stat", "{kind}", "", "")'
        for name, (rng, _) in WINDOWS.items()
        for kind in ("errors", "slow")
    ),
    "latency": " or ".join(
        per_window(
            f"label_replace(histogram_quantile({q}, "
            f'digits:sli_latency_seconds_bucket:increase{{w}}), "q", "{label}", "", "")'
        )
        for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
    ),
    "predictions": per_window("sum by (digit) (increase(digits_predictions_total[{w}]))"),
    "baseline": per_window("sum by (digit) (increase(digits_predictions_total[1d] offset {w}))"),
    "confidence": per_window("sum by (le) (increase(digits_confidence_bucket[{w}]))"),
    "rejections": per_window("sum by (reason) (increase(digits_rejections_total[{w}]))"),
    "postcode_reasons": per_window(
        "sum by (reason) (increase(digits_postcode_review_reasons_total[{w}]))"
    ),
    "counts": " or ".join(
        per_window(f'label_replace(sum(increase({metric}[{{w}}])), "stat", "{name}", "", "")')
        for name, metric in (
            ("fallbacks", "digits_sync_fallback_total"),
            ("needs_review", "digits_needs_review_total"),
            ("postcodes", "digits_postcodes_total"),
            # doubled braces: per_window() formats the whole expression with the window
            ("postcodes_review", 'digits_postcodes_total{{outcome="needs_review"}}'),
            ("batches", "digits_batch_size_count"),
            ("batch_images", "digits_batch_size_sum"),
            ("duplicates", "digits_duplicate_results_total"),
        )
    ),
    "now": named(
        {
            "availability_objective": "digits:slo_availability:objective",
            "latency_objective": "digits:slo_latency:objective",
            "latency_objective_s": "digits:slo_latency_seconds:objective",
            "throughput_1m": "sum(digits:sli_requests:increase1m) / 60",
            "workers_up": "sum(digits_worker_up)",
        }
    ),
    "versions": " or ".join(
        per_window(
            f'label_replace(sum by (version{extra}) (increase({metric}[{{w}}])), "stat", "{name}",'
            ' "", "")'
        )
        for name, metric, extra in (
            ("images", "digits_version_images_total", ""),
            ("flagged", "digits_version_needs_review_total", ""),
            ("model_seconds", "digits_version_model_seconds_sum", ""),
            ("reviewed", "digits_reviews_resolved_total", ", outcome"),
        )
    ),
    "version_latency": per_window(
        "histogram_quantile(0.99, sum by (version, le) "
        "(increase(digits_version_model_seconds_bucket[{w}])))"
    ),
    "model": "sum by (name, version) (digits_model_info)",
    "reference_classes": "max by (name, version, digit) (digits_model_reference_class_share)",
    "reference_confidence": "max by (name, version, le) (digits_model_reference_confidence_share)",
}
TIMELINE = "sum by (status_class) (digits:sli_requests:increase1m)"
"""Requests per minute by status class; read as a range query at 1 min steps."""


async def read(prometheus: Prometheus, now: float) -> dict[str, Any]:
    """Every query at evaluation time `now`, concurrently. Raises PrometheusUnavailable."""
    names = list(QUERIES)
    tasks: list[Coroutine[Any, Any, Any]] = [prometheus.query(QUERIES[name], now) for name in names]
    tasks.append(prometheus.query_range(TIMELINE, now - 3600, now, 60))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            if isinstance(result, PrometheusUnavailable):
                raise result
            raise PrometheusUnavailable(f"{type(result).__name__}: {result}") from result
    answers = dict(zip(names, results, strict=False))
    answers["timeline"] = results[-1]
    return answers


def _by(series: list[tuple[dict[str, str], float]], *keys: str) -> dict[tuple[str, ...], float]:
    return {tuple(labels.get(k, "") for k in keys): value for labels, value in series}


def _count(value: float | None) -> int:
    """`increase()` extrapolates to the window's edges: counts are rounded to whole events."""
    return round(value) if value is not None else 0


def psi(observed: list[float], expected: list[float]) -> float:
    """Population stability index `Σ (o − e) · ln(o / e)` of two class mixes (shares)."""
    o = [max(p, _EPSILON) for p in observed]
    e = [max(p, _EPSILON) for p in expected]
    return sum((a - b) * math.log(a / b) for a, b in zip(o, e, strict=True))


def drift(
    counts: list[float], reference: list[float] | None, baseline: list[float], rule: DriftRule
) -> dict[str, Any]:
    """Predicted-class mix vs the model's reference and vs the baseline (the day before)."""
    samples = sum(counts)
    observed = [c / samples for c in counts] if samples else None
    baseline_samples = sum(baseline)
    report: dict[str, Any] = {
        "samples": _count(samples),
        "observed": [round(p, 6) for p in observed] if observed else None,
        "reference": [round(p, 6) for p in reference] if reference else None,
        "psi": round(psi(observed, reference), 6) if observed and reference else None,
        "baseline_samples": _count(baseline_samples),
        "baseline": [round(c / baseline_samples, 6) for c in baseline]
        if baseline_samples
        else None,
        "baseline_psi": None,
        "threshold": rule.psi,
        "min_samples": rule.min_samples,
    }
    if observed and baseline_samples >= rule.min_samples:
        report["baseline_psi"] = round(psi(observed, report["baseline"]), 6)
    if samples < rule.min_samples or report["psi"] is None:
        state = "insufficient_data"
    elif report["psi"] <= rule.psi:
        state = "stable"
    elif report["baseline_psi"] is not None and report["baseline_psi"] <= rule.psi:
        # Not the training mix, but the same as the day before: this office's normal mail.
        state = "usual_mix"
    else:
        state = "drifting"
    report["state"] = state
    report["drifting"] = state == "drifting"
    return report


def _bins(cumulative: dict[str, float]) -> list[int]:
    """Per-bin counts from a histogram's cumulative `le` buckets (the +Inf bucket dropped)."""
    edges = sorted((float(le), n) for le, n in cumulative.items() if le != "+Inf")
    counts, previous = [], 0.0
    for _, n in edges:
        counts.append(max(0, _count(n - previous)))
        previous = n
    return counts


def _served(answers: dict[str, Any]) -> tuple[dict[str, str] | None, int]:
    """The model most worker processes serve (a rollout may show two), and how many do."""
    served = sorted(answers["model"], key=lambda item: -item[1])
    if not served:
        return None, 0
    labels, processes = served[0]
    return {"name": labels.get("name", ""), "version": labels.get("version", "")}, int(processes)


def _reference(answers: dict[str, Any], model: dict[str, str] | None):
    if model is None:
        return None, None
    mine = lambda labels: labels.get("version") == model["version"]  # noqa: E731
    classes = {l["digit"]: v for l, v in answers["reference_classes"] if mine(l)}  # noqa: E741
    confidence = {float(l["le"]): v for l, v in answers["reference_confidence"] if mine(l)}  # noqa: E741
    reference = [classes[d] for d in DIGITS] if set(classes) >= set(DIGITS) else None
    return reference, [confidence[e] for e in sorted(confidence)] or None


def windows(answers: dict[str, Any], rule: DriftRule) -> dict[str, dict[str, Any]]:
    """One report per window from the query answers."""
    requests = _by(answers["requests"], "window", "status_class")
    ratios = _by(answers["ratios"], "window", "stat")
    latency = _by(answers["latency"], "window", "q")
    predictions = _by(answers["predictions"], "window", "digit")
    baseline = _by(answers["baseline"], "window", "digit")
    rejections = answers["rejections"]
    counts = _by(answers["counts"], "window", "stat")
    now = _by(answers["now"], "stat")
    objective = now.get(("availability_objective",))
    budget = 1.0 - objective if objective is not None else None
    model, _ = _served(answers)
    reference, reference_confidence = _reference(answers, model)
    report = {}
    for name, (_, seconds) in WINDOWS.items():
        classes = {c: requests.get((name, c), 0.0) for c in ("2xx", "3xx", "4xx", "5xx")}
        total = sum(classes.values())
        errors = ratios.get((name, "errors"))
        slow = ratios.get((name, "slow"))
        by_digit = [predictions.get((name, d), 0.0) for d in DIGITS]
        blanks = predictions.get((name, "none"), 0.0)
        predicted = sum(by_digit) + blanks
        review = counts.get((name, "needs_review"), 0.0)
        codes = counts.get((name, "postcodes"), 0.0)
        codes_review = counts.get((name, "postcodes_review"), 0.0)
        batches = counts.get((name, "batches"), 0.0)
        confidence = {
            labels["le"]: value
            for labels, value in answers["confidence"]
            if labels.get("window") == name
        }
        report[name] = {
            "seconds": seconds,
            "requests": _count(total),
            "errors_5xx": _count(classes["5xx"]),
            "status_classes": {c: _count(n) for c, n in classes.items()},
            "availability": _round(1.0 - errors if errors is not None else None, 6),
            "error_ratio": _round(errors, 6),
            "burn_rate": _round(errors / budget if errors is not None and budget else None, 3),
            "error_budget_remaining": _round(
                1.0 - errors / budget if errors is not None and budget else None, 4
            ),
            "latency_s": {q: _round(latency.get((name, q)), 4) for q in ("p50", "p95", "p99")},
            "latency_within_objective": _round(1.0 - slow if slow is not None else None, 6),
            "throughput_rps": round(total / seconds, 4),
            "sync_fallbacks": _count(counts.get((name, "fallbacks"))),
            "rejections": {
                labels["reason"]: _count(value)
                for labels, value in sorted(rejections, key=lambda item: item[0].get("reason"))
                if labels.get("window") == name and _count(value)
            },
            "predictions": _count(predicted),
            "predictions_by_digit": {d: _count(n) for d, n in zip(DIGITS, by_digit, strict=True)}
            | {"none": _count(blanks)},
            "needs_review": _count(review),
            "review_rate": _round(review / predicted if predicted else None, 6),
            "postcodes": _count(codes),
            "postcodes_needs_review": _count(codes_review),
            "postcode_review_rate": _round(codes_review / codes if _count(codes) else None, 6),
            "postcode_review_reasons": {
                labels["reason"]: _count(value)
                for labels, value in sorted(
                    answers["postcode_reasons"], key=lambda item: item[0].get("reason")
                )
                if labels.get("window") == name and _count(value)
            },
            "batches": _count(batches),
            "mean_batch_size": _round(
                counts.get((name, "batch_images"), 0.0) / batches if batches else None, 2
            ),
            "duplicate_results": _count(counts.get((name, "duplicates"))),
            "confidence_histogram": {
                "bin_width": 0.05,
                "counts": _bins(confidence),
                "reference": reference_confidence,
            },
            "drift": drift(
                by_digit, reference, [baseline.get((name, d), 0.0) for d in DIGITS], rule
            ),
            "versions": versions(answers, name),
        }
    return report


def versions(answers: dict[str, Any], window: str) -> dict[str, dict[str, Any]]:
    """Per model version in `window`: traffic, review rate, model time and accuracy on the
    items people reviewed (what a canary is judged on, beside production)."""
    stats: dict[str, dict[str, float]] = {}
    for labels, value in answers["versions"]:
        if labels.get("window") != window:
            continue
        stat = labels["stat"]
        if stat == "reviewed":
            stat = f"reviewed_{labels.get('outcome', '')}"
        stats.setdefault(labels.get("version", ""), {})[stat] = value
    p99 = {
        labels.get("version", ""): value
        for labels, value in answers["version_latency"]
        if labels.get("window") == window
    }
    report = {}
    for version, got in sorted(stats.items()):
        images = _count(got.get("images"))
        right, wrong = _count(got.get("reviewed_right")), _count(got.get("reviewed_wrong"))
        reviewed = right + wrong
        if not images and not reviewed:
            continue
        low, high = wilson(right, reviewed)
        flagged = _count(got.get("flagged"))
        report[version] = {
            "images": images,
            "needs_review": flagged,
            "review_rate": _round(flagged / images if images else None, 6),
            "model_ms_per_image": _round(
                1000 * got.get("model_seconds", 0.0) / images if images else None, 4
            ),
            "model_seconds_p99_per_message": _round(p99.get(version), 4),
            "reviewed": reviewed,
            "reviewed_right": right,
            "reviewed_accuracy": _round(right / reviewed if reviewed else None, 4),
            "reviewed_accuracy_95ci": [round(low, 4), round(high, 4)] if reviewed else None,
        }
    return report


def objectives(answers: dict[str, Any], rule: DriftRule) -> dict[str, Any]:
    now = _by(answers["now"], "stat")
    return {
        "availability": now.get(("availability_objective",)),
        "latency": now.get(("latency_objective",)),
        "latency_s": now.get(("latency_objective_s",)),
        "drift_psi": rule.psi,
        "drift_min_samples": rule.min_samples,
    }


def current(answers: dict[str, Any]) -> dict[str, Any]:
    """What is true now: 1 min throughput, worker processes up, the model they serve."""
    now = _by(answers["now"], "stat")
    model, processes = _served(answers)
    throughput = now.get(("throughput_1m",))
    return {
        "throughput_1m_rps": _round(throughput, 4),
        "worker_processes_up": _count(now.get(("workers_up",))),
        "model": model,
        "model_processes": processes,
    }


def timeline(answers: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """Oldest-first requests and 5xx per minute over the last hour."""
    minutes: dict[float, dict[str, Any]] = {}
    for labels, values in answers["timeline"]:
        for at, value in values:
            point = minutes.setdefault(at, {"minute": at, "requests": 0, "errors_5xx": 0})
            point["requests"] += _count(value)
            if labels.get("status_class") == "5xx":
                point["errors_5xx"] += _count(value)
    return [minutes[at] for at in sorted(minutes)]


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)
