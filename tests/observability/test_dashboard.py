"""The dashboard, rendered by headless Chromium after real traffic, shows `/v1/slo`'s numbers,
which are Prometheus'; with Prometheus stopped it shows "unknown", not 100 %."""

from __future__ import annotations

import json
import signal
from html.parser import HTMLParser

import httpx
import pytest
from PIL import Image

from harness.processes import ROOT, wait_until
from tests.observability.support import (
    DIGIT7_PNG,
    OUTPUT,
    SLI,
    close,
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
        code = (ROOT / "examples" / "postcode.png").read_bytes()
        for length in (5, 9):  # 9: the code's own five digits are a length_mismatch
            answer = client.post(
                f"/v1/postcodes?length={length}",
                content=code,
                headers={"Content-Type": "image/png"},
            )
            assert answer.status_code == 200, answer.text
    slo = quiescent(stack)  # nothing moves while the page is rendered

    dom = render(f"{stack.api_url}/dashboard", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-ready="1"' in dom.stdout, "the page never rendered /v1/slo"
    parser = _Raw()
    parser.feed(dom.stdout)
    shown = parser.raw
    # The page read /v1/slo a moment after the test did: counts agree within one scrape's
    # extrapolation (`close`), ratios of the same scrapes exactly or nearly.
    for window in ("5m", "1h", "24h"):
        numbers = slo["windows"][window]
        assert close(shown[f"w-{window}-requests"], numbers["requests"])
        assert close(shown[f"w-{window}-predictions"], numbers["predictions"])
        assert shown[f"w-{window}-availability"] == pytest.approx(numbers["availability"])
        assert shown[f"w-{window}-p99"] == pytest.approx(numbers["latency_s"]["p99"], rel=0.05)
        assert shown[f"w-{window}-drift"] == pytest.approx(numbers["drift"]["psi"], abs=0.01)
        assert shown[f"w-{window}-burn"] == pytest.approx(numbers["burn_rate"], abs=0.01)
    # ... and they are Prometheus' numbers: the whole test history is inside the 24 h window.
    raw = stack.prometheus.scalar(f"sum(digits_http_requests_total{{{SLI}}})")
    assert close(shown["w-24h-requests"], raw)
    five = slo["windows"]["5m"]
    assert shown["availability"] == pytest.approx(five["availability"])
    assert shown["p99"] == pytest.approx(five["latency_s"]["p99"], rel=0.05)
    # Review per envelope (codes), with the reasons: what a sorting office counts.
    assert five["postcodes"] == 2 and five["postcodes_needs_review"] >= 1
    assert five["postcode_review_reasons"].get("length_mismatch", 0) >= 1
    assert shown["review-rate"] == pytest.approx(five["postcode_review_rate"], abs=0.01)
    assert shown["drift-state"] == five["drift"]["state"]
    # One row per model version serving (here production only): its numbers from /v1/slo.
    served = slo["current"]["model"]["version"]
    assert set(five["versions"]) == {served}, five["versions"]
    row = shown[f"version-{served}"]
    assert close(row["images"], five["versions"][served]["images"])
    assert close(five["versions"][served]["images"], five["predictions"])
    assert row["model_ms_per_image"] > 0
    assert shown["workers-count"] == len(slo["workers"]) == 2
    assert shown["queue-depth"] == 0
    assert shown["review-backlog"] == slo["reviews"]["pending"]
    assert shown["throughput"] is not None and shown["throughput"] >= 0

    screenshot = OUTPUT / "dashboard.png"
    screenshot.unlink(missing_ok=True)
    shot = render(f"{stack.api_url}/dashboard", f"--screenshot={screenshot}")
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    with Image.open(screenshot) as image:
        assert image.size == (1400, 1800)
        colours = image.convert("RGB").resize((140, 180)).getcolors(maxcolors=100_000)
        assert colours is not None and len(colours) > 20  # charts and text, not a blank page


def test_dashboard_says_unknown_while_prometheus_is_stopped(stack):
    stack.prometheus.process.signal(signal.SIGSTOP)
    try:
        slo = wait_until(  # each API process reuses a report for 1 s
            lambda: (
                (body := httpx.get(f"{stack.api_url}/v1/slo", timeout=5).json())
                and body["windows"] is None
                and body
            ),
            5,
            "/v1/slo to say unknown",
        )
        dom = render(f"{stack.api_url}/dashboard", "--dump-dom")
    finally:
        stack.prometheus.process.signal(signal.SIGCONT)
    assert slo["windows"] is None
    assert dom.returncode == 0 and 'data-ready="1"' in dom.stdout, dom.stderr[-2000:]
    parser = _Raw()
    parser.feed(dom.stdout)
    assert parser.raw["availability"] is None and parser.raw["p99"] is None
    assert ">unknown<" in dom.stdout and "Prometheus unavailable" in dom.stdout
    assert "100.000 %" not in dom.stdout
    assert parser.raw["workers-count"] == 2  # Redis still answers: the live state is known
