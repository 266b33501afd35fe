"""`GET /dashboard`: the SLO dashboard, one self-contained page (no CDN: it works offline).

The page polls `/v1/slo` and draws its charts in SVG; the files are read once at import.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import Response

router = APIRouter(include_in_schema=False)

_STATIC = Path(__file__).resolve().parents[1] / "static"
_PAGE = (
    (_STATIC / "dashboard.html")
    .read_text()
    .replace("/*STYLE*/", (_STATIC / "dashboard.css").read_text())
    .replace("/*SCRIPT*/", (_STATIC / "dashboard.js").read_text())
    .encode()
)


@router.get("/dashboard")
async def dashboard() -> Response:
    return Response(
        _PAGE, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"}
    )
