"""Judge a canary on reviewed labels: is the candidate right more often than production?

Workers serving a canary (`DIGITS_CANARY_SHARE`) record on every review item the version that
answered it (`model_version`); a person's label then says whether that version was right
(a "no digit" verdict is right when the model found no digit). Per version: items reviewed,
items right, accuracy with a 95 % Wilson interval; between the two: the difference in
accuracy with Newcombe's hybrid score interval (method 10, Newcombe 1998), which behaves at
small counts and near 0 or 1 where the normal approximation does not.

The verdict: `promote` when the interval of (candidate - production) lies above zero (the
candidate is right more often, at 95 %) and its model time per image is no worse than
`LATENCY_TOLERANCE` x production's (Prometheus, the workers' per-version counters), `reject`
when the interval lies below or it is slower, else `wait` (not enough reviews to tell, or
latency unknown); never before `min_reviews` reviewed items of each version.

NOTE: each version is scored on the items it flagged itself, the hard ones by its own
confidence, not on a common sample: read the result with the review rate per version
(Prometheus `digits_version_needs_review` / `digits_version_images`) beside it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from common.reviews import LABELLED_KEY, is_right, wilson


@dataclass(frozen=True)
class VersionScore:
    version: str
    reviewed: int
    right: int

    @property
    def accuracy(self) -> float:
        return self.right / self.reviewed if self.reviewed else float("nan")

    def interval(self) -> tuple[float, float]:
        return wilson(self.right, self.reviewed)


LATENCY_TOLERANCE = 1.25
"""The candidate may be at most this much slower per image than production (model time is
noisy on a shared machine; a real regression, e.g. a bigger network, is well beyond it)."""
LATENCY_WINDOW = "1h"


@dataclass(frozen=True)
class Latency:
    """Model milliseconds per image of each version over `LATENCY_WINDOW` (Prometheus)."""

    candidate_ms: float | None
    production_ms: float | None
    source: str

    @property
    def known(self) -> bool:
        return self.candidate_ms is not None and self.production_ms is not None


@dataclass(frozen=True)
class Verdict:
    decision: str
    """`promote`, `reject` or `wait`."""
    difference: float
    low: float
    high: float
    reason: str


def difference_interval(a: VersionScore, b: VersionScore) -> tuple[float, float, float]:
    """(p_a - p_b, low, high): Newcombe's hybrid score interval from the two Wilson ones."""
    pa, pb = a.accuracy, b.accuracy
    la, ua = a.interval()
    lb, ub = b.interval()
    diff = pa - pb
    low = diff - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    high = diff + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return diff, max(-1.0, low), min(1.0, high)


def scores(records: list[dict[str, Any]]) -> dict[str, VersionScore]:
    """Reviewed and right per `model_version` (records without one predate canaries)."""
    counts: dict[str, list[int]] = {}
    for record in records:
        version = record.get("model_version")
        if version is None:
            continue
        tally = counts.setdefault(str(version), [0, 0])
        tally[0] += 1
        tally[1] += is_right(record)
    return {v: VersionScore(v, n, right) for v, (n, right) in counts.items()}


def judge(
    candidate: VersionScore,
    production: VersionScore,
    min_reviews: int = 30,
    latency: Latency | None = None,
    tolerance: float = LATENCY_TOLERANCE,
) -> Verdict:
    """On reviewed accuracy first; a candidate right more often is promoted only with no worse
    latency (`latency` None: not compared, as asked with `--no-latency`)."""
    verdict = _judge_accuracy(candidate, production, min_reviews)
    if verdict.decision != "promote" or latency is None:
        return verdict
    if not latency.known:
        return Verdict(
            "wait",
            verdict.difference,
            verdict.low,
            verdict.high,
            f"{verdict.reason}; but latency unknown ({latency.source})",
        )
    if latency.candidate_ms > tolerance * latency.production_ms:
        return Verdict(
            "reject",
            verdict.difference,
            verdict.low,
            verdict.high,
            f"{verdict.reason}; but slower: {latency.candidate_ms:.3f} ms per image against "
            f"{latency.production_ms:.3f} (more than {tolerance:g}x)",
        )
    return verdict


def read_latency(prometheus_url: str, candidate: str, production: str) -> Latency:
    """Each version's model time per image over `LATENCY_WINDOW`, from the workers' counters."""
    import httpx

    w = LATENCY_WINDOW
    expr = (
        f"sum by (version) (increase(digits_version_model_seconds_sum[{w}])) * 1000"
        f" / sum by (version) (increase(digits_version_images_total[{w}]))"
    )
    try:
        body = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=5)
        result = body.json()["data"]["result"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return Latency(None, None, f"Prometheus at {prometheus_url}: {type(exc).__name__}")
    ms = {
        item["metric"].get("version"): float(item["value"][1])
        for item in result
        if not math.isnan(float(item["value"][1]))
    }
    source = f"Prometheus at {prometheus_url}, last {w}"
    return Latency(ms.get(candidate), ms.get(production), source)


def _judge_accuracy(candidate: VersionScore, production: VersionScore, min_reviews: int) -> Verdict:
    if min(candidate.reviewed, production.reviewed) < min_reviews:
        return Verdict(
            "wait",
            float("nan"),
            -1.0,
            1.0,
            f"need {min_reviews} reviewed items of each version (candidate "
            f"{candidate.reviewed}, production {production.reviewed})",
        )
    diff, low, high = difference_interval(candidate, production)
    span = f"{diff:+.1%} (95 % CI {low:+.1%} to {high:+.1%})"
    if low > 0:
        return Verdict("promote", diff, low, high, f"candidate right more often: {span}")
    if high < 0:
        return Verdict("reject", diff, low, high, f"candidate right less often: {span}")
    return Verdict("wait", diff, low, high, f"cannot tell yet: {span}")


def read_labelled(redis_url: str) -> list[dict[str, Any]]:
    import redis

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10)
    return [json.loads(raw) for raw in client.hgetall(LABELLED_KEY).values()]


def report(
    candidate: VersionScore,
    production: VersionScore,
    verdict: Verdict,
    latency: Latency | None = None,
) -> str:
    lines = [
        f"{'':>22}  {'version':>7}  {'reviewed':>8}  {'right':>6}  accuracy (95 % CI)"
        f"{'  model ms/image' if latency else ''}"
    ]
    for role, s in (("candidate", candidate), ("production", production)):
        low, high = s.interval()
        line = (
            f"{role:>22}  {s.version:>7}  {s.reviewed:>8}  {s.right:>6}  "
            f"{s.accuracy:.1%} ({low:.1%} to {high:.1%})"
        )
        if latency:
            ms = latency.candidate_ms if role == "candidate" else latency.production_ms
            line += f"  {ms:.3f}" if ms is not None else "  unknown"
        lines.append(line)
    if latency:
        lines.append(f"latency from {latency.source}")
    else:
        lines.append("latency not compared (--no-latency)")
    lines.append(f"verdict: {verdict.decision} - {verdict.reason}")
    return "\n".join(lines)
