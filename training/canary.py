"""Judge a canary on reviewed labels: is the candidate right more often than production?

Workers serving a canary (`CANARY_SHARE`) record on every review item the version that
answered it (`model_version`); a person's label then says whether that version was right
(a "no digit" verdict is right when the model found no digit). Per version: items reviewed,
items right, accuracy with a 95 % Wilson interval; between the two: the difference in
accuracy with Newcombe's hybrid score interval (method 10, Newcombe 1998), which behaves at
small counts and near 0 or 1 where the normal approximation does not.

The verdict: `promote` when the interval of (candidate - production) lies above zero (the
candidate is right more often, at 95 %), `reject` when it lies below, else `wait` (not enough
reviews to tell); never before `min_reviews` reviewed items of each version.

NOTE: each version is scored on the items it flagged itself, the hard ones by its own
confidence, not on a common sample: read the result with the review rate per version
(Prometheus `digits_version_needs_review` / `digits_version_images`) beside it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from common.reviews import LABELLED_KEY, VERDICT_NO_DIGIT

Z95 = 1.959964


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


@dataclass(frozen=True)
class Verdict:
    decision: str
    """`promote`, `reject` or `wait`."""
    difference: float
    low: float
    high: float
    reason: str


def wilson(right: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion `right / n`."""
    if n == 0:
        return 0.0, 1.0
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_interval(a: VersionScore, b: VersionScore) -> tuple[float, float, float]:
    """(p_a - p_b, low, high): Newcombe's hybrid score interval from the two Wilson ones."""
    pa, pb = a.accuracy, b.accuracy
    la, ua = a.interval()
    lb, ub = b.interval()
    diff = pa - pb
    low = diff - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    high = diff + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return diff, max(-1.0, low), min(1.0, high)


def is_right(record: dict[str, Any]) -> bool:
    if record.get("verdict") == VERDICT_NO_DIGIT:
        return record.get("model_digit") is None
    return record.get("label") is not None and record.get("model_digit") == record.get("label")


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


def judge(candidate: VersionScore, production: VersionScore, min_reviews: int = 30) -> Verdict:
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


def report(candidate: VersionScore, production: VersionScore, verdict: Verdict) -> str:
    lines = [f"{'':>22}  {'version':>7}  {'reviewed':>8}  {'right':>6}  accuracy (95 % CI)"]
    for role, s in (("candidate", candidate), ("production", production)):
        low, high = s.interval()
        lines.append(
            f"{role:>22}  {s.version:>7}  {s.reviewed:>8}  {s.right:>6}  "
            f"{s.accuracy:.1%} ({low:.1%} to {high:.1%})"
        )
    lines.append(f"verdict: {verdict.decision} - {verdict.reason}")
    return "\n".join(lines)
