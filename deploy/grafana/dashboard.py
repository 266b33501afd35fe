"""Build the Grafana SLO dashboard: `python deploy/grafana/dashboard.py` rewrites the JSON.

The dashboard is generated rather than hand-edited so the panels stay readable as code
and the queries can be checked (tests/deploy/test_grafana.py). Edit here, rerun, commit both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards" / "digits-slo.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
SLI = 'route=~"/v1/.+|/v2/models/.+",route!="/v1/slo",route!~".+/ready"'
"""The SLI selector of deploy/prometheus/rules/recording.yml, for the one window the rules do
not record (30 days); tests/deploy/test_prometheus.py checks it is the same."""
AVAILABILITY_OBJECTIVE = 0.9999
LATENCY_OBJECTIVE_S = 2.0


def _p95(histogram: str) -> str:
    return f"histogram_quantile(0.95, sum by (le) (rate({histogram}_bucket[5m])))"


def _thresholds(*steps: tuple[str, float | None]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping to new rows."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def row(self, title: str) -> None:
        self._wrap()
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        self.y += 1

    def add(
        self,
        kind: str,
        title: str,
        description: str,
        targets: list[tuple[str, str]],
        *,
        w: int = 8,
        h: int = 8,
        unit: str = "short",
        thresholds: dict[str, Any] | None = None,
        decimals: int | None = None,
        options: dict[str, Any] | None = None,
        custom: dict[str, Any] | None = None,
        instant: bool = False,
    ) -> None:
        if self.x + w > 24:
            self._wrap()
        defaults: dict[str, Any] = {"unit": unit}
        if thresholds:
            defaults["thresholds"] = thresholds
            defaults["color"] = {"mode": "thresholds"}
        if decimals is not None:
            defaults["decimals"] = decimals
        if custom:
            defaults["custom"] = custom
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": kind,
                "title": title,
                "description": description,
                "datasource": DATASOURCE,
                "gridPos": {"x": self.x, "y": self.y, "w": w, "h": h},
                "targets": [
                    {
                        "refId": chr(ord("A") + i),
                        "datasource": DATASOURCE,
                        "expr": expr,
                        "legendFormat": legend,
                        "instant": instant,
                        "range": not instant,
                    }
                    for i, (expr, legend) in enumerate(targets)
                ],
                "fieldConfig": {"defaults": defaults, "overrides": []},
                "options": options or {},
            }
        )
        self.x += w
        self.row_h = max(self.row_h, h)

    def _wrap(self) -> None:
        if self.x:
            self.y += self.row_h
        self.x = 0
        self.row_h = 0


def build() -> dict[str, Any]:
    """The dashboard as a dict, in the same panel order as the service's own /dashboard."""
    g = Layout()
    avail_steps = _thresholds(("red", None), ("green", AVAILABILITY_OBJECTIVE))
    stat_opts = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}

    g.row("Service level objectives")
    g.add(
        "stat",
        "Availability (non-5xx share of /v1) vs 99.99 %",
        "Share of /v1 requests not answered with 5xx over the last 5 min, 1 h and 24 h.",
        [
            ("1 - digits:sli_errors:ratio_rate5m", "5 min"),
            ("1 - digits:sli_errors:ratio_rate1h", "1 h"),
            ("1 - digits:sli_errors:ratio_rate1d", "24 h"),
        ],
        unit="percentunit",
        decimals=3,
        thresholds=avail_steps,
        options=stat_opts,
        instant=True,
    )
    g.add(
        "stat",
        "Error budget left (30 days)",
        "1 - (5xx share over 30 d) / (1 - 99.99 %). Below 0: the objective is missed.",
        [
            (
                f'1 - (sum(increase(digits_http_requests_total{{{SLI},status_class="5xx"}}[30d]))'
                f" / sum(increase(digits_http_requests_total{{{SLI}}}[30d])))"
                f" / (1 - {AVAILABILITY_OBJECTIVE})",
                "budget left",
            )
        ],
        unit="percentunit",
        decimals=1,
        thresholds=_thresholds(("red", None), ("orange", 0.25), ("green", 0.5)),
        options=stat_opts,
        instant=True,
    )
    g.add(
        "stat",
        "Requests within 2 s vs 99.9 %",
        "Share of /v1 requests answered within the 2 s objective: 5 min, 1 h, 24 h.",
        [
            ("1 - digits:sli_slow:ratio_rate5m", "5 min"),
            ("1 - digits:sli_slow:ratio_rate1h", "1 h"),
            ("1 - digits:sli_slow:ratio_rate1d", "24 h"),
        ],
        unit="percentunit",
        decimals=3,
        thresholds=_thresholds(("red", None), ("green", 0.999)),
        options=stat_opts,
        instant=True,
    )
    g.add(
        "timeseries",
        "Availability over time",
        "Non-5xx share (5 min windows) against the 99.99 % objective line.",
        [
            ("1 - digits:sli_errors:ratio_rate5m", "availability"),
            ("digits:slo_availability:objective", "objective"),
        ],
        w=12,
        unit="percentunit",
        decimals=3,
    )
    g.add(
        "timeseries",
        "Latency p50 / p95 / p99 vs 2 s",
        "Quantiles of /v1 request duration from the histogram; the flat line is the objective.",
        [
            ("digits:http_request_duration_seconds:p50_5m", "p50"),
            ("digits:http_request_duration_seconds:p95_5m", "p95"),
            ("digits:http_request_duration_seconds:p99_5m", "p99"),
            (f"vector({LATENCY_OBJECTIVE_S})", "objective"),
        ],
        w=12,
        unit="s",
    )

    g.row("Traffic")
    g.add(
        "timeseries",
        "Throughput by route and status class",
        "HTTP requests per second, every route.",
        [
            (
                "sum by (route, status_class) (rate(digits_http_requests_total[5m]))",
                "{{route}} {{status_class}}",
            )
        ],
        unit="reqps",
    )
    g.add(
        "timeseries",
        "Images predicted per second",
        "Model outputs per second, all workers.",
        [("digits:predictions:rate5m", "images/s")],
        unit="short",
    )
    g.add(
        "timeseries",
        "Rejections, sync fallbacks, in flight",
        "Refused requests by reason; synchronous waits that became 202; requests in progress.",
        [
            ("sum by (reason) (rate(digits_rejections_total[5m]))", "rejected: {{reason}}"),
            ("sum(rate(digits_sync_fallback_total[5m]))", "sync -> 202"),
            ("sum(digits_http_requests_in_flight)", "in flight"),
        ],
    )

    g.row("Queue and workers")
    g.add(
        "timeseries",
        "Queue depth",
        "Messages waiting in Redis per queue (interactive is served first).",
        [("max by (queue) (digits_queue_depth)", "{{queue}}")],
    )
    g.add(
        "timeseries",
        "Oldest queued job age",
        "Age of the oldest waiting message; interactive over 2 s means the sync SLO is at risk.",
        [
            ("max by (queue) (digits_queue_oldest_age_seconds)", "{{queue}}"),
            (f"vector({LATENCY_OBJECTIVE_S})", "2 s"),
        ],
        unit="s",
    )
    g.add(
        "stat",
        "Workers up",
        "Worker processes reporting a loaded model. 0 pages the on-call (DigitsNoWorkers).",
        [("sum(digits_worker_up)", "workers")],
        w=4,
        thresholds=_thresholds(("red", None), ("green", 1)),
        options=stat_opts,
        instant=True,
    )
    g.add(
        "stat",
        "Model",
        "Name and version of the model the workers serve.",
        [("count by (name, version) (digits_model_info)", "{{name}} v{{version}}")],
        w=4,
        options={**stat_opts, "textMode": "name"},
        instant=True,
    )
    g.add(
        "timeseries",
        "Batch size (images per model call)",
        "Mean and p95 images per ONNX Runtime call: bigger batches mean better throughput.",
        [
            ("digits:batch_size:mean_5m", "mean"),
            (_p95("digits_batch_size"), "p95"),
        ],
    )
    g.add(
        "timeseries",
        "Where the time goes (p95)",
        "Queue wait (enqueue to batch start), model time per batch, end-to-end job time.",
        [
            (
                _p95("digits_queue_wait_seconds"),
                "queue wait",
            ),
            (
                _p95("digits_model_seconds"),
                "model",
            ),
            (_p95("digits_job_seconds"), "job"),
        ],
        unit="s",
    )
    g.add(
        "timeseries",
        "Duplicate results",
        "Results written twice (a redelivered message): non-zero after worker crashes only.",
        [("sum(rate(digits_duplicate_results_total[5m]))", "duplicates/s")],
    )

    g.row("Model behaviour")
    g.add(
        "timeseries",
        "Review rate",
        "Share of predictions below DIGITS_REVIEW_THRESHOLD, sent to a human.",
        [("digits:needs_review:ratio_rate5m", "needs review")],
        unit="percentunit",
    )
    g.add(
        "bargauge",
        "Predicted digit distribution (dashboard range)",
        "Share of each predicted class; compare with the training mix (/dashboard shows drift).",
        [
            (
                "sum by (digit) (increase(digits_predictions_total[$__range]))"
                " / scalar(sum(increase(digits_predictions_total[$__range])))",
                "{{digit}}",
            )
        ],
        unit="percentunit",
        options={"orientation": "vertical", "displayMode": "basic"},
        instant=True,
    )
    g.add(
        "bargauge",
        "Confidence histogram (dashboard range)",
        "Predictions per confidence bucket (cumulative `le` buckets turned into counts).",
        [("sum by (le) (increase(digits_confidence_bucket[$__range]))", "{{le}}")],
        options={"orientation": "vertical", "displayMode": "basic"},
        instant=True,
    )
    for target in g.panels[-1]["targets"]:
        target["format"] = "heatmap"

    return {
        "uid": "digits-slo",
        "title": "Digits service — SLO",
        "description": "Availability 99.99 % and 2 s latency objectives, queue, workers, model.",
        "tags": ["digits", "slo"],
        "timezone": "utc",
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": g.panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
