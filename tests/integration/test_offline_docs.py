"""`/docs` and `/redoc` render their operations in headless Chromium with no network: every
asset comes from the service itself (api/routes/docs.py), and every other host is unresolvable
for the browser."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.observability.support import render

pytestmark = pytest.mark.integration

OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
"""Chromium resolves no name but loopback: a CDN asset could not load."""


def test_docs_pages_reference_no_other_host(api_url):
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{api_url}{page}", timeout=10).text
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        response = httpx.get(f"{api_url}/docs-assets/{asset}", timeout=10)
        assert response.status_code == 200 and len(response.content) > 100_000, asset


def test_swagger_ui_renders_every_operation_offline(api_url):
    spec = httpx.get(f"{api_url}/openapi.json", timeout=10).json()
    dom = render(f"{api_url}/docs", OFFLINE, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    shown = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom.stdout))
    assert shown == set(spec["paths"]), set(spec["paths"]) ^ shown
    assert "Authorize" in dom.stdout  # the securitySchemes: "Try it out" can send a key


def test_redoc_renders_the_operations_offline(api_url):
    dom = render(f"{api_url}/redoc", OFFLINE, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for summary in ("Predict", "Infer", "List Models"):
        assert summary in dom.stdout, summary
