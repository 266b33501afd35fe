"""The API's app factory: `uvicorn api.main:create_app --factory` (or `python -m api`)."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from api import observability
from api.config import ApiSettings
from api.deps import require_api_key
from api.errors import install_error_handlers
from api.observability.metrics import count_shed
from api.openapi import document_api_keys
from api.periodic import Loops
from api.recovery.sweeper import Sweeper, SweepPolicy
from api.review.store import ReviewStore
from api.routes import dashboard, docs, health, metrics, models, predict, reviews, v2
from api.serving.admission import Admission
from api.serving.deadline import StampArrival
from api.serving.dispatch import Dispatcher
from api.serving.jobs import JobStore
from api.serving.results import ResultListener
from api.serving.service import PredictionService
from api.serving.shedding import DeadlineHttpProtocol
from common import kernels
from common.contract import JOB_IDS_HEADER, TASK_PREDICT
from common.imaging import set_max_pixels
from common.logs import configure_logging
from common.queueing import TRANSPORT, make_celery

log = logging.getLogger(__name__)


def celery_sender(settings: ApiSettings):
    """A blocking `(queue, payload) -> None` that publishes one task by name, without retries."""
    celery = make_celery("digits-api", settings.redis_url, broker_transport=TRANSPORT)

    def send(queue: str, payload: dict) -> None:
        # NOTE: retry=False: with Redis down the client gets a 503 now, not after ~19 s.
        job_ids = [job["id"] for job in payload["jobs"]]
        celery.send_task(
            TASK_PREDICT,
            args=[payload],
            queue=queue,
            retry=False,
            ignore_result=True,
            headers={JOB_IDS_HEADER: job_ids},
            # NOTE: Celery would otherwise repr the payload (base64 images) into every
            # message's headers for Flower: 13 % of a publish's CPU, profiled.
            argsrepr=f"[<{len(job_ids)} jobs>]",
            kwargsrepr="{}",
        )
        # One line per message (not per request): joins an HTTP job id to the worker's batch.
        log.info("enqueued", extra={"queue": queue, "job_ids": job_ids})

    return send


async def _first_look(admission: Admission) -> None:
    """Read the queue state once before serving, so the first requests are judged on facts."""
    with contextlib.suppress(RedisError, OSError):
        await admission.refresh()


def _redis_clients(settings: ApiSettings, parts: contextlib.AsyncExitStack) -> tuple[Redis, Redis]:
    """The request path's pooled client and the result subscription's own client."""
    timeouts: dict[str, Any] = {"socket_connect_timeout": settings.redis_timeout_s}
    # NOTE: a blocking pool: under a burst a request waits (bounded) for a connection
    # instead of failing at redis-py's default cap of 100.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        **timeouts,
    )
    client = Redis(connection_pool=pool)
    parts.push_async_callback(client.aclose)
    # The subscription idles between results: it must not have a read timeout.
    listener_client = Redis.from_url(settings.redis_url, health_check_interval=15, **timeouts)
    parts.push_async_callback(listener_client.aclose)
    return client, listener_client


async def _start_parts(
    app: FastAPI, settings: ApiSettings, parts: contextlib.AsyncExitStack
) -> None:
    """The composition root: every object the API process runs on, wired once."""
    obs = await observability.start(app, settings)
    parts.push_async_callback(obs.stop)  # last to stop: it forgets this process's metrics
    client, listener_client = _redis_clients(settings, parts)
    store = JobStore(client, settings.result_ttl_s)
    listener = ResultListener(listener_client, reply_to=uuid.uuid4().hex)
    dispatcher = Dispatcher(
        store,
        celery_sender(settings),
        reply_to=listener.reply_to,
        max_batch_size=settings.max_batch_size,
        max_batch_delay_s=settings.max_batch_delay_ms / 1000,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.reviews = ReviewStore(client)
    admission = Admission(
        client,
        sync_budget_s=settings.sync_budget_s,
        max_bulk_messages=settings.max_bulk_messages,
        worker_stale_s=settings.worker_stale_s,
        max_loop_lag_s=settings.max_loop_lag_s,
    )
    service = PredictionService(
        store,
        dispatcher,
        listener,
        admission,
        settings.max_in_flight,
        sync_result_ttl_s=settings.sync_result_ttl_s,
    )
    app.state.service = service
    sweeper = Sweeper(
        client,
        dispatcher,
        SweepPolicy(
            interval_s=settings.sweep_interval_s,
            queued_grace_s=settings.sweep_queued_grace_s,
            worker_stale_s=settings.worker_stale_s,
            running_limit_s=settings.task_time_limit_s + SweepPolicy.running_grace_s,
            max_attempts=settings.max_attempts,
        ),
        owner=listener.reply_to,
    )
    await listener.start()
    parts.push_async_callback(listener.stop)
    parts.push_async_callback(dispatcher.close)  # flushes what is pending before the listener stops
    await _first_look(admission)
    loops = Loops(admission.periodic, admission.lag.periodic, sweeper.periodic)
    loops.start()
    parts.push_async_callback(loops.stop)
    DeadlineHttpProtocol.admit_with(service.refusal_now)
    parts.callback(DeadlineHttpProtocol.admit_with, None)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    configure_logging("api", settings.log_level, settings.log_json)
    set_max_pixels(settings.max_image_pixels)  # Pillow's guard follows DIGITS_MAX_IMAGE_PIXELS
    kernels.warm_up()  # compiled (or loaded from the cache) now, not in the first request

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each part's stop is registered the moment it starts: shutdown runs them in
        # reverse, and a start that fails half-way still stops what had started.
        async with contextlib.AsyncExitStack() as parts:
            await _start_parts(app, settings, parts)
            yield

    app = FastAPI(
        title="Digits reading service",
        version="1.0.0",
        description="Reads handwritten digits and postal codes. Synchronous answers within 2 s, "
        "or submit a job and poll it.",
        lifespan=lifespan,
        docs_url=None,  # served offline by api.routes.docs
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    routers = (
        health.router,
        predict.router,
        reviews.router,
        models.router,
        v2.router,
        v2.models,
        metrics.router,
        dashboard.router,
    )
    for router in routers:
        app.include_router(router)
    document_api_keys(app, routers, require_api_key)
    docs.install(app)
    observability.install(app)
    app.add_middleware(StampArrival)  # outermost: the deadline counts from here
    DeadlineHttpProtocol.configure(
        settings.shed_after_s, settings.shed_standing_after_s, count_shed
    )
    return app
