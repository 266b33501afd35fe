"""Human review: list low-confidence predictions, resolve them with the right label."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field, model_validator
from starlette.responses import Response

from api.deps import require_api_key
from api.errors import ApiError, json_response
from api.openapi import error_responses
from api.review.store import ReviewNotFound, ReviewStore
from api.schemas import ReviewList, ReviewResolved
from common.reviews import VERDICT_DIGIT

router = APIRouter(prefix="/v1/reviews", tags=["reviews"], dependencies=[Depends(require_api_key)])


class Resolution(BaseModel):
    """`{"label": 7}` (a digit), or `{"verdict": "no_digit"}` (label omitted or null): the
    image holds no digit (blank envelope, a smudge, not a postal code). A no-digit answer
    resolves the item without inventing a label; the export keeps it apart."""

    label: int | None = Field(None, ge=0, le=9, description="The digit a person read.")
    verdict: Literal["digit", "no_digit"] | None = Field(
        None,
        description='"no_digit": there is no digit to read (then no label). '
        'Default "digit" when a label is given.',
    )
    reviewer: str | None = Field(None, max_length=100)

    @model_validator(mode="after")
    def _one_answer(self) -> Resolution:
        if self.verdict is None:
            if self.label is None:
                raise ValueError('give a "label" 0-9, or "verdict": "no_digit"')
            self.verdict = "digit"
        elif self.verdict == "digit" and self.label is None:
            raise ValueError('verdict "digit" needs a "label" 0-9')
        elif self.verdict == "no_digit" and self.label is not None:
            raise ValueError('verdict "no_digit" takes no label (send "label": null or omit it)')
        return self


async def get_reviews(request: Request) -> ReviewStore:
    return request.app.state.reviews


Reviews = Annotated[ReviewStore, Depends(get_reviews)]


@router.get("", responses={200: {"model": ReviewList}, **error_responses([401, 422, 503])})
async def list_reviews(
    reviews: Reviews,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """Pending items, oldest first, each with its normalised 28x28 image as base64 PNG."""
    return json_response(await reviews.pending(offset, limit))


@router.post(
    "/{review_id}",
    responses={
        200: {"model": ReviewResolved},
        **error_responses({401: "", 404: "Unknown or already resolved", 422: "", 503: ""}),
    },
)
async def resolve_review(
    reviews: Reviews,
    resolution: Resolution,
    review_id: Annotated[str, Path(max_length=80)],
) -> Response:
    """Record the correct label (or that there is no digit); the job's answer shows it beside
    the model's digit."""
    try:
        result = await reviews.resolve(
            review_id,
            resolution.label,
            resolution.reviewer,
            verdict=resolution.verdict or VERDICT_DIGIT,  # set by Resolution's validator
        )
    except ReviewNotFound:
        raise ApiError(
            "review_not_found", f"no pending review {review_id}", status_code=404
        ) from None
    return json_response(result)
