"""`GET /v1/models`: the model the service answers with, its versions, aliases and input."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api import catalog
from api.deps import SettingsDep, require_api_key
from api.errors import json_response
from api.openapi import error_responses
from api.schemas import ModelList

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(require_api_key)])


@router.get("/models", responses={200: {"model": ModelList}, **error_responses([401])})
async def list_models(settings: SettingsDep) -> Response:
    """Name, published and served versions, aliases (`production`, ...) and input contract,
    read from the registry's metadata (`models/<name>/<version>/metadata.json`)."""
    entry = await run_in_threadpool(catalog.describe, settings.models_dir, settings.model_name)
    return json_response({"models": [entry]})
