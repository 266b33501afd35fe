"""Response models: what the OpenAPI document promises each endpoint answers.

The routes still write their bodies with orjson (a pydantic round trip per answer costs CPU
on the hot path); these models only describe the answers, and the schemathesis run
(tests/integration/test_contract_fuzz.py) checks every live answer against them. Fields are
added here, never renamed: the bodies themselves are the contract (README, HTTP API).
Models allow extra fields: an answer may carry more than is described, never less.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------- errors


class ErrorDetail(_Open):
    code: str = Field(description="Stable machine-readable reason, e.g. `too_many_images`.")
    message: str
    index: int | None = Field(None, description="Which image of the request, when one is.")


class ErrorResponse(_Open):
    """Every /v1 error status (4xx/5xx) answers this; a failed job's body has the same
    `error` object beside its `id`, `status` and `kind`."""

    error: ErrorDetail


class V2Error(_Open):
    """Open Inference Protocol error: `{"error": "<message>"}`."""

    error: str


# --------------------------------------------------------------------------- predictions


class Prediction(_Open):
    digit: int | None = Field(description="0-9, or null when the image holds no ink.")
    confidence: float
    probabilities: list[float] | None = Field(description="10 calibrated probabilities.")
    needs_review: bool
    reason: Literal["low_confidence", "no_digit_found"] | None = None
    reviewed_digit: int | None = None
    reviewed_verdict: Literal["digit", "no_digit"] | None = None


class DigitsResult(_Open):
    id: str
    status: Literal["done", "reviewed"]
    kind: Literal["digits"]
    model_version: str
    predictions: list[Prediction]


class PostcodeDigit(_Open):
    digit: int
    confidence: float
    box: list[int] = Field(description="[x, y, width, height] in the sent image.")
    probabilities: list[float]


class RunnerUp(_Open):
    text: str
    probability: float


class Postcode(_Open):
    text: str
    confidence: float
    probability: float
    decoding: Literal["digits", "directory"]
    runner_up: RunnerUp | None
    per_digit_text: str
    needs_review: bool
    reasons: list[str]
    digits: list[PostcodeDigit]


class PostcodeResult(_Open):
    """One entry per image in `postcodes`; with one image its fields repeat at the top."""

    id: str
    status: Literal["done", "reviewed"]
    kind: Literal["postcode"]
    model_version: str
    postcodes: list[Postcode]


class Accepted(_Open):
    """Not answered yet: poll `status_url` (also in `Location`)."""

    id: str
    status: Literal["queued", "running", "done", "failed", "reviewed"]
    kind: Literal["digits", "postcode"]
    status_url: str


class FailedJob(_Open):
    id: str
    status: Literal["failed"]
    kind: str | None
    error: ErrorDetail


class JobView(_Open):
    """A job's state; once done, the same body as the synchronous answer."""

    id: str
    status: Literal["queued", "running", "done", "failed", "reviewed"]
    kind: Literal["digits", "postcode"] | None
    model_version: str | None = None
    predictions: list[Prediction] | None = None
    postcodes: list[Postcode] | None = None
    error: ErrorDetail | None = None


# --------------------------------------------------------------------------- reviews


class ReviewItem(_Open):
    id: str
    job_id: str
    kind: str
    index: int
    path: list[str | int] = Field(description="Where the answer sits in the job's body.")
    model_digit: int | None
    confidence: float | None
    reason: str
    flagged_at: float
    image_png: str = Field(description="The normalised 28x28 image, base64 PNG.")


class ReviewList(_Open):
    total: int
    offset: int
    limit: int
    items: list[ReviewItem]


class ReviewResolved(_Open):
    id: str
    job_id: str
    label: int | None
    verdict: Literal["digit", "no_digit"]
    model_digit: int | None
    model_version: str | None
    """The model version that answered the item (production or the canary)."""
    model_right: bool
    """Whether that answer was right, by the person's verdict."""


# --------------------------------------------------------------------------- health, SLO


class Live(_Open):
    status: Literal["live"]


class Ready(_Open):
    status: Literal["ready"]
    workers: int = Field(description="Live workers with a loaded model.")
    sync: bool = Field(
        description="Sync requests can be answered now (a worker is live); without one this "
        "replica still takes bulk jobs, and sync requests get 503 `no_workers` at once."
    )


class SloSource(_Open):
    ok: bool
    reason: str | None = Field(description="Why this source's numbers are unknown (null if ok).")
    url: str | None = None


class SloSources(_Open):
    prometheus: SloSource
    redis: SloSource


class SloObjectives(_Open):
    availability: float | None = Field(description="From Prometheus' recording rules.")
    latency: float | None = Field(description="Share of requests to answer within latency_s.")
    latency_s: float | None
    drift_psi: float
    drift_min_samples: int


class SloLatency(_Open):
    p50: float | None
    p95: float | None
    p99: float | None


class SloConfidence(_Open):
    bin_width: float
    counts: list[int]
    reference: list[float] | None


class SloDrift(_Open):
    state: Literal["insufficient_data", "stable", "usual_mix", "drifting"] = Field(
        description="`usual_mix`: differs from the training reference, not from the day before."
    )
    drifting: bool
    samples: int
    observed: list[float] | None
    reference: list[float] | None
    psi: float | None = Field(description="PSI of the observed class mix vs the reference.")
    baseline_samples: int
    baseline: list[float] | None = Field(description="Class mix of the 24 h before the window.")
    baseline_psi: float | None
    threshold: float
    min_samples: int


class SloVersion(_Open):
    images: int
    needs_review: int
    review_rate: float | None
    model_ms_per_image: float | None
    """Model time per image: the latency a version adds (the rest of the path is shared)."""
    model_seconds_p99_per_message: float | None
    reviewed: int
    """Its review items a person resolved in the window."""
    reviewed_right: int
    reviewed_accuracy: float | None
    reviewed_accuracy_95ci: list[float] | None
    """Wilson score interval of `reviewed_accuracy`."""


class SloWindow(_Open):
    """One window's numbers, all from Prometheus (`increase()` over exactly this window)."""

    seconds: int
    requests: int
    errors_5xx: int
    status_classes: dict[str, int]
    availability: float | None = Field(description="Null: no request in the window.")
    error_ratio: float | None
    burn_rate: float | None = Field(description="Error ratio / error budget (1 = on budget).")
    error_budget_remaining: float | None
    latency_s: SloLatency
    latency_within_objective: float | None
    throughput_rps: float
    sync_fallbacks: int
    rejections: dict[str, int]
    predictions: int
    predictions_by_digit: dict[str, int]
    needs_review: int
    review_rate: float | None = Field(description="Flagged digit images / digit images.")
    postcodes: int = Field(description="Postal codes read: one per envelope image.")
    postcodes_needs_review: int
    postcode_review_rate: float | None = Field(
        description="Flagged codes / codes: the share of envelopes sent to a person."
    )
    postcode_review_reasons: dict[str, int] = Field(
        description="Why flagged codes need review (low_confidence, length_mismatch, ...)."
    )
    batches: int
    mean_batch_size: float | None
    duplicate_results: int
    confidence_histogram: SloConfidence
    drift: SloDrift
    versions: dict[str, SloVersion] = Field(
        default_factory=dict,
        description="Per model version serving in the window (production and a canary).",
    )


class SloCurrent(_Open):
    throughput_1m_rps: float | None
    worker_processes_up: int
    model: dict[str, str] | None
    model_processes: int


class SloQueue(_Open):
    depth: int
    """Messages waiting (a message carries one or many jobs)."""
    images: int
    """Images in the queue's jobs not yet started: the work waiting, whatever the chunking."""
    oldest_age_s: float


class SloWorker(_Open):
    name: str
    last_seen_s: float


class SloReviews(_Open):
    pending: int
    oldest_age_s: float | None


class SloMinute(_Open):
    minute: float
    requests: int
    errors_5xx: int


class SloReport(_Open):
    """`GET /v1/slo`. Parts read from a source that is down are null; `sources` says why."""

    generated_at: float
    sources: SloSources
    objectives: SloObjectives
    model: dict[str, str] | None
    current: SloCurrent | None
    windows: dict[str, SloWindow] | None
    timeline: list[SloMinute] | None
    queues: dict[str, SloQueue] | None
    workers: list[SloWorker] | None
    reviews: SloReviews | None


# --------------------------------------------------------------------------- models


class InputContract(_Open):
    dtype: str
    shape: list[int | None]
    range: list[float] | None = None
    polarity: str | None = None
    normalisation: str | None = None
    output: str | None = None


class ModelVersion(_Open):
    version: int
    aliases: list[str]
    served: bool
    accuracy: float | None
    created_at: str | None


class ModelInfo(_Open):
    name: str
    served_versions: list[int] = Field(description="What the workers answer with now.")
    aliases: dict[str, int]
    versions: list[ModelVersion]
    input_contract: InputContract | None
    http_input: str = Field(description="What the prediction endpoints accept.")


class ModelList(_Open):
    models: list[ModelInfo]


# --------------------------------------------------------------------------- v2 (OIP)


class V2Tensor(_Open):
    name: str
    datatype: Literal["BOOL", "UINT8", "INT64", "FP32", "BYTES"]
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(
        None, description="Row-major values; absent when `parameters.binary_data_size` is."
    )


class V2RequestedOutput(_Open):
    name: Literal["digit", "confidence", "probabilities", "needs_review"]
    parameters: dict[str, Any] | None = None


class V2InferRequest(_Open):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2Tensor] = Field(min_length=1, max_length=1)
    outputs: list[V2RequestedOutput] | None = None


class V2InferResponse(_Open):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[V2Tensor]


class V2TensorMetadata(_Open):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(_Open):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2ServerMetadata(_Open):
    name: str
    version: str
    extensions: list[str]


class V2Live(_Open):
    live: bool


class V2Ready(_Open):
    ready: bool


class V2ModelReady(_Open):
    name: str
    version: str | None = None
    ready: bool
