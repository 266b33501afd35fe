"""The dashboard, rendered by headless Chromium after real traffic, shows `/v1/slo`'s numbers."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from PIL import Image

from tests.observability.support import (
    DIGIT7_PNG,
    OUTPUT,
    json_images,
    predict,
    quiescent,
    render,
)

pytestmark = pytest.mark.integration


class _Raw(HTMLParser):
    """id -> data-raw (JSON) of every element that has both."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: dict[str, object] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id") and found.get("data-raw") is not None:
            self.raw[found["id"]] = json.loads(found["data-raw"])


def test_dashboard_shows_the_slo_numbers(stack):
    with stack.client() as client:
        for size in (1, 3, 8):
            assert predict(client, json_images([DIGIT7_PNG] * size)).status_code == 200
        assert predict(client, b"{broken").status_code == 400
    slo = quiescent(stack)  # nothing moves while the page is rendered

    dom = render(f"{stack.api_url}/dashboard", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-ready="1"' in dom.stdout, "the page never rendered /v1/slo"
    parser = _Raw()
    parser.feed(dom.stdout)
    shown = parser.raw
    for window in ("5m", "1h", "24h"):
        numbers = slo["windows"][window]
        assert shown[f"w-{window}-requests"] == numbers["requests"]
        assert shown[f"w-{window}-availability"] == numbers["availability"]
        assert shown[f"w-{window}-p99"] == numbers["latency_s"]["p99"]
        assert shown[f"w-{window}-predictions"] == numbers["predictions"]
        assert shown[f"w-{window}-drift"] == numbers["drift"]["psi"]
    five = slo["windows"]["5m"]
    assert shown["availability"] == five["availability"]
    assert shown["p99"] == five["latency_s"]["p99"]
    assert shown["review-rate"] == five["review_rate"]
    assert shown["drift-state"] == five["drift"]["state"]
    assert shown["workers-count"] == len(slo["workers"]) == 2
    assert shown["queue-depth"] == 0

    screenshot = OUTPUT / "dashboard.png"
    screenshot.unlink(missing_ok=True)
    shot = render(f"{stack.api_url}/dashboard", f"--screenshot={screenshot}")
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    with Image.open(screenshot) as image:
        assert image.size == (1400, 1800)
        colours = image.convert("RGB").resize((140, 180)).getcolors(maxcolors=100_000)
        assert colours is not None and len(colours) > 20  # charts and text, not a blank page
