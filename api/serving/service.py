"""Submitting work and waiting for it: the logic behind every prediction route."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from redis.exceptions import RedisError
from starlette.responses import Response

from api.errors import ApiError, ServiceUnavailable, json_response
from api.serving.admission import Admission
from api.serving.dispatch import Dispatcher
from api.serving.inputs import Prepared
from api.serving.jobs import Bound, JobStore, NewJob, is_final, request_digest
from api.serving.results import ResultListener
from common.contract import QUEUE_BULK, QUEUE_INTERACTIVE, JobSpec, JobStatus

MIN_USEFUL_WAIT_S = 0.05
"""A sync request that lost its wait before it got here (queued unread, a late loop) and has
less than this left is refused, not queued: no batch turns around that fast, so it could
only become a late answer or a 202 nobody asked for."""


def status_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def accepted(job_id: str, kind: str, status: str = JobStatus.QUEUED) -> Response:
    """202: the job goes on; the client polls `status_url`."""
    url = status_url(job_id)
    body = {"id": job_id, "status": str(status), "kind": kind, "status_url": url}
    return json_response(body, 202, {"Location": url})


def finished(view: dict) -> Response:
    """A final job: 200 with its answer, or 500 when inference itself failed."""
    return json_response(view, 500 if view["status"] == JobStatus.FAILED else 200)


@dataclass
class Answer:
    """The outcome of a synchronous request at its deadline: the final job view, or (view
    None) the job's id and status when it was not done in time (the job goes on)."""

    job_id: str
    kind: str
    status: str
    view: dict | None = None


class PredictionService:
    def __init__(
        self,
        store: JobStore,
        dispatcher: Dispatcher,
        listener: ResultListener,
        admission: Admission,
        max_in_flight: int = 512,
        sync_result_ttl_s: int = 60,
    ) -> None:
        self.store = store
        self.sync_result_ttl_s = sync_result_ttl_s
        self.dispatcher = dispatcher
        self.listener = listener
        self.admission = admission
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def admit_sync(self) -> None:
        """Refuse (503) a sync request that could not be answered in time, before its body
        is even read: a refusal must cost far less than the work it avoids."""
        await self.admission.check_sync()
        refusal = self._local_refusal()
        if refusal is not None:
            raise refusal

    def refusal_now(self) -> ServiceUnavailable | None:
        """Every refusal `admit_sync` can give without awaiting anything: what the HTTP
        protocol (api/serving/shedding.py) answers from its own bytes, before the app sees the
        request.
        """
        return self.admission.refusal_now() or self._local_refusal()

    def _local_refusal(self) -> ServiceUnavailable | None:
        if not self.listener.healthy:
            # The answer could not reach this process: it would only come back as a 202 at
            # the deadline. Refused now; /readyz says the same, so the balancer moves on.
            return ServiceUnavailable(
                "results_unavailable",
                "this API process's result subscription is down (reconnecting); retry",
            )
        if self.in_flight >= self.max_in_flight:
            # This process is the bottleneck: more waiters would only all answer late.
            return ServiceUnavailable(
                "overloaded", f"{self.in_flight} requests already waiting in this process"
            )
        return None

    async def predict(
        self, prepared: Prepared, wait_s: float, arrived: float | None = None
    ) -> Response:
        """Answer within `wait_s` of `arrived`: 200 with the result, or 202 and the job goes on.

        `wait_s=0` means "enqueue and return": always 202. Call `admit_sync` first.
        """
        answer = await self.answer(prepared, wait_s, arrived)
        if answer.view is not None:
            return finished(answer.view)
        return accepted(answer.job_id, answer.kind, answer.status)

    async def answer(
        self, prepared: Prepared, wait_s: float, arrived: float | None = None
    ) -> Answer:
        """The protocol-neutral core of every synchronous route (v1 and v2): the same queue,
        batching and deadline; the caller turns the outcome into its own HTTP answer.

        The deadline is `arrived` (`api.serving.deadline.arrived_at`) + `wait_s`, less the
        loop's lag; a request that lost most of its wait before it got here is refused (503
        `overloaded`) before any work is queued for it. A short `wait` of the client's own is
        not refused: it ends in a 202 as always.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Time the wait already lost: since arrival, plus the loop's lag, which the answer's
        # write will wait too (the robust median: one slow step does not refuse the next).
        lost = (0.0 if arrived is None else now - arrived) + self.admission.lag.lag_s
        deadline = now + wait_s - lost
        if wait_s > 0 and lost >= MIN_USEFUL_WAIT_S and deadline - now < MIN_USEFUL_WAIT_S:
            raise ServiceUnavailable(
                "overloaded",
                f"this request waited {lost:.2f}s before this API process could take it; "
                "its answer could not come in time; retry",
                retry_after_s=1,
            )
        self.in_flight += 1
        try:
            return await self._answer(prepared, wait_s, deadline)
        finally:
            self.in_flight -= 1

    async def _answer(self, prepared: Prepared, wait_s: float, deadline: float) -> Answer:
        loop = asyncio.get_running_loop()
        spec = self._spec(prepared)
        kind = str(prepared.kind)
        result = self.listener.expect(spec.id)  # NOTE: registered before the job can finish
        # Retention: an answer delivered in this 200 is kept only DIGITS_SYNC_RESULT_TTL_S; a 202
        # (wait=0 or the deadline passed) promises a poll, so the job keeps DIGITS_RESULT_TTL_S.
        keep_s = self.sync_result_ttl_s if wait_s > 0 else self.store.ttl_s
        try:
            await self.dispatcher.submit(spec, prepared.images, QUEUE_INTERACTIVE, keep_s=keep_s)
            if wait_s <= 0:
                return Answer(spec.id, kind, str(JobStatus.QUEUED))
            try:
                view = await asyncio.wait_for(result, max(0.0, deadline - loop.time()))
                return Answer(spec.id, kind, view["status"], view)
            except TimeoutError:
                # The notification may have been missed (e.g. a resubscribe): look once, and
                # keep the job DIGITS_RESULT_TTL_S from now on, since the client will poll it.
                try:
                    view = await self.store.keep(spec.id, self.store.ttl_s)
                except RedisError:
                    view = None  # the job is stored; the client polls it later
                if view is not None and is_final(view):
                    return Answer(spec.id, kind, view["status"], view)
                status = view["status"] if view else JobStatus.QUEUED
                return Answer(spec.id, kind, str(status))
        finally:
            self.listener.forget(spec.id)

    async def submit(
        self, prepared: Prepared, idempotency_key: str | None = None, caller: str = ""
    ) -> Response:
        """Queue bulk work; a retry of the same request with the same `Idempotency-Key` (per
        caller) gets the same job, the key reused for a different request a 409."""
        self.admission.check_bulk()
        spec = self._spec(prepared)
        stored = False
        if idempotency_key:
            # NOTE: the key is bound in the same atomic step that stores the job, so a key
            # never names a job that was not stored (a 503 here leaves either nothing or
            # the stored job, which a retry then finds; a stored job whose message was not
            # published is re-sent by the sweeper).
            job = NewJob(spec, prepared.images, QUEUE_BULK)
            digest = request_digest(str(prepared.kind), prepared.images, prepared.meta)
            bound = await self.store.create_keyed(idempotency_key, job, digest, caller)
            if bound is not None:
                return await self._bound(bound, str(prepared.kind))
            stored = True
        await self.dispatcher.submit(spec, prepared.images, QUEUE_BULK, stored=stored)
        return accepted(spec.id, str(prepared.kind))

    async def _bound(self, bound: Bound, kind: str) -> Response:
        """The answer to a submission whose Idempotency-Key already names a job."""
        if not bound.same_request:
            raise ApiError(
                "idempotency_key_reused",
                f"this Idempotency-Key was already used for a different request (job "
                f"{bound.job_id}); a retry must send the same request, new work a new key",
                status_code=409,
            )
        view = await self.store.get(bound.job_id) or {}  # same request: the same kind
        return accepted(bound.job_id, kind, view.get("status") or JobStatus.QUEUED)

    @staticmethod
    def _spec(prepared: Prepared) -> JobSpec:
        return JobSpec(uuid.uuid4().hex, prepared.kind, len(prepared.images), prepared.meta)
