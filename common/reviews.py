"""The human review queue, kept in Redis next to the jobs.

Workers add an item for every prediction marked `needs_review` (with its normalised
28x28 image); the API lists pending items oldest first and resolves them with a
person's label; the labelled examples stay (no TTL) until exported for retraining
(`python -m training reviews export`).
"""

from __future__ import annotations

import math
from typing import Any

from common.contract import KEY_PREFIX

PENDING_REVIEWS_KEY = f"{KEY_PREFIX}:reviews:pending"
"""Sorted set: review id -> unix time flagged (oldest first)."""
LABELLED_KEY = f"{KEY_PREFIX}:reviews:labelled"
"""Hash: review id -> JSON {label, verdict, model_digit, confidence, reason, job_id, ...}."""
LABELLED_IMAGES_KEY = f"{KEY_PREFIX}:reviews:labelled-images"
"""Hash: review id -> 784 raw bytes of the normalised image."""

VERDICT_DIGIT = "digit"
"""A person read a digit: `label` is 0-9."""
VERDICT_NO_DIGIT = "no_digit"
"""A person saw no digit (blank, smudge, not a postal code): `label` is null. Exported
apart from the labelled examples (`no_digit_*` arrays), never as a digit."""


def review_key(review_id: str) -> str:
    return f"{KEY_PREFIX}:review:{review_id}"


def review_id(job_id: str, index: int) -> str:
    """One review per image of a job: `<job id>-<image index>`."""
    return f"{job_id}-{index}"


ADD_REVIEWS = """
-- KEYS[1]: pending set. ARGV: now, ttl, max pending, then (id, job key, fields json, image)
-- per item. At max pending, new items are not queued (their answers still say needs_review):
-- an unattended review queue must not fill Redis. Returns {added, skipped, job keys added...}.
local added, skipped, jobs = 0, 0, {}
local room = tonumber(ARGV[3]) - redis.call('ZCARD', KEYS[1])
for i = 4, #ARGV, 4 do
  local id, jobkey, fields, image = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local key = 'REVIEW_KEY_PREFIX' .. id
  if redis.call('EXISTS', key) == 0 then
    if added >= room then
      skipped = skipped + 1
    else
      redis.call('HSET', key, 'fields', fields, 'image', image, 'created_at', ARGV[1])
      redis.call('EXPIRE', key, ARGV[2])
      redis.call('ZADD', KEYS[1], ARGV[1], id)
      redis.call('HINCRBY', jobkey, 'pending_reviews', 1)
      added = added + 1
      jobs[#jobs + 1] = jobkey
    end
  end
end
local result = {added, skipped}
for _, jobkey in ipairs(jobs) do result[#result + 1] = jobkey end
return result
""".replace("REVIEW_KEY_PREFIX", review_key(""))


Z95 = 1.959964


def is_right(record: dict[str, Any]) -> bool:
    """Was the model right on a resolved review? A "no digit" verdict is right when the model
    found no digit; otherwise the person's label must be the model's digit."""
    if record.get("verdict") == VERDICT_NO_DIGIT:
        return record.get("model_digit") is None
    return record.get("label") is not None and record.get("model_digit") == record.get("label")


def wilson(right: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion `right / n` (behaves at small n and near 0
    or 1, where the normal approximation does not)."""
    if n == 0:
        return 0.0, 1.0
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
