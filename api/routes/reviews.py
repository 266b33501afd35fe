"""Human review: list low-confidence predictions, resolve them with the right label."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from api.deps import require_api_key
from api.errors import ApiError, json_response
from api.reviews import ReviewNotFound, ReviewStore

router = APIRouter(prefix="/v1/reviews", tags=["reviews"], dependencies=[Depends(require_api_key)])


class Resolution(BaseModel):
    label: int = Field(ge=0, le=9, description="The digit a person read.")
    reviewer: str | None = Field(None, max_length=100)


async def get_reviews(request: Request) -> ReviewStore:
    return request.app.state.reviews


Reviews = Annotated[ReviewStore, Depends(get_reviews)]


@router.get("")
async def list_reviews(
    reviews: Reviews,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """Pending items, oldest first, each with its normalised 28x28 image as base64 PNG."""
    return json_response(await reviews.pending(offset, limit))


@router.post("/{review_id}", responses={404: {"description": "Unknown or already resolved"}})
async def resolve_review(
    reviews: Reviews,
    resolution: Resolution,
    review_id: Annotated[str, Path(max_length=80)],
) -> Response:
    """Record the correct label; the job's answer shows it beside the model's digit."""
    try:
        result = await reviews.resolve(review_id, resolution.label, resolution.reviewer)
    except ReviewNotFound:
        raise ApiError(
            "review_not_found", f"no pending review {review_id}", status_code=404
        ) from None
    return json_response(result)
