"""Listing and resolving review items; a resolution corrects the job's visible answer."""

from __future__ import annotations

import base64
import io
import time
from typing import Any, cast

import numpy as np
import orjson
from PIL import Image
from redis.asyncio import Redis
from redis.exceptions import WatchError

from api.observability.metrics import count_resolved_review, reviews_listed
from common.contract import IMAGE_SIDE, JobStatus, job_key
from common.reviews import (
    LABELLED_IMAGES_KEY,
    LABELLED_KEY,
    PENDING_REVIEWS_KEY,
    VERDICT_DIGIT,
    VERDICT_NO_DIGIT,
    is_right,
    review_key,
)


def png_base64(raw: bytes) -> str:
    image = Image.fromarray(np.frombuffer(raw, np.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE), "L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


class ReviewNotFound(LookupError):
    pass


class ReviewStore:
    def __init__(self, client: Redis) -> None:
        self._redis = client

    async def pending(self, offset: int, limit: int) -> dict[str, Any]:
        """Oldest first; items whose record expired are dropped from the queue on the way."""
        total = await self._redis.zcard(PENDING_REVIEWS_KEY)
        ids = cast(
            "list[tuple[bytes, float]]",
            await self._redis.zrange(
                PENDING_REVIEWS_KEY, offset, offset + limit - 1, withscores=True
            ),
        )
        async with self._redis.pipeline(transaction=False) as pipe:
            for rid, _ in ids:
                pipe.hmget(review_key(rid.decode()), "fields", "image")
            records = await pipe.execute()
        items, expired = [], []
        for (rid, flagged_at), (fields, image) in zip(ids, records, strict=True):
            if fields is None:
                expired.append(rid)
                continue
            items.append(
                {
                    "id": rid.decode(),
                    **orjson.loads(fields),
                    "flagged_at": flagged_at,
                    "image_png": png_base64(image),
                }
            )
        if expired:
            await self._redis.zrem(PENDING_REVIEWS_KEY, *expired)
        reviews_listed({item.get("model_version") for item in items})
        return {"total": total - len(expired), "offset": offset, "limit": limit, "items": items}

    async def resolve(
        self, rid: str, label: int | None, reviewer: str | None, verdict: str = VERDICT_DIGIT
    ) -> dict[str, Any]:
        """Record the label, correct the job's answer; the job is `reviewed` once none is left.

        `verdict` "no_digit" (with `label` None): a person saw no digit; it resolves the item
        without a label, and the export keeps such examples apart from the labelled ones.
        """
        if (verdict == VERDICT_NO_DIGIT) != (label is None):
            raise ValueError("a digit verdict needs a label, a no_digit verdict none")
        key = review_key(rid)
        fields_raw, image = await self._redis.hmget(key, "fields", "image")
        if fields_raw is None:
            raise ReviewNotFound(rid)
        fields = orjson.loads(fields_raw)
        labelled = {
            **fields,
            "label": label,
            "verdict": verdict,
            "reviewer": reviewer,
            "resolved_at": time.time(),
        }
        job = job_key(fields["job_id"])
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(job, key)
                    if not await pipe.exists(key):
                        raise ReviewNotFound(rid)  # resolved meanwhile by someone else
                    body_raw, left_raw = await pipe.hmget(job, "body", "pending_reviews")
                    pipe.multi()
                    if body_raw is not None:
                        left = max(0, int(left_raw or 1) - 1)
                        body = corrected(
                            orjson.loads(body_raw), fields["path"], label, left == 0, verdict
                        )
                        pipe.hset(
                            job, mapping={"body": orjson.dumps(body), "pending_reviews": left}
                        )
                        if left == 0:
                            pipe.hset(job, "status", str(JobStatus.REVIEWED))
                    pipe.hset(LABELLED_KEY, rid, orjson.dumps(labelled))
                    pipe.hset(LABELLED_IMAGES_KEY, rid, image)
                    pipe.delete(key)
                    pipe.zrem(PENDING_REVIEWS_KEY, rid)
                    await pipe.execute()
                    break
                except WatchError:
                    continue
        right = is_right(labelled)
        count_resolved_review(fields.get("model_version"), right)
        return {
            "id": rid,
            "job_id": fields["job_id"],
            "label": label,
            "verdict": verdict,
            "model_digit": fields["model_digit"],
            "model_version": fields.get("model_version"),
            "model_right": right,
        }


def corrected(
    body: dict, path: list, label: int | None, all_reviewed: bool, verdict: str = VERDICT_DIGIT
) -> dict:
    """Put the person's label beside the model's answer at `path` in a job's body.

    No digit: `reviewed_digit` is null and `reviewed_verdict` "no_digit"; in a postcode that
    position is left out of `reviewed_text` (a mark that was not a digit).
    """
    node: Any = body
    for step in path:
        node = node[step]
    node["reviewed_digit"] = label
    node["reviewed_verdict"] = verdict
    if body.get("kind") == "postcode":
        for code in body["postcodes"]:
            code["reviewed_text"] = "".join(
                str(d.get("reviewed_digit", d["digit"]))
                for d in code["digits"]
                if d.get("reviewed_verdict") != VERDICT_NO_DIGIT
            )
        if len(body["postcodes"]) == 1:
            body.update({k: body["postcodes"][0][k] for k in ("digits", "reviewed_text")})
    if all_reviewed:
        body["status"] = str(JobStatus.REVIEWED)
    return body
