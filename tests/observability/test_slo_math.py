"""The arithmetic behind /v1/slo, and the bulk histogram update the metrics rely on."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from api.slo import Counts, Objectives, drift, quantile, summarize, windows_of
from common.prom import add_bucketed
from common.rollup import LATENCY_BUCKETS, confidence_bin, latency_bucket


def test_quantile_interpolates_inside_a_bucket_like_prometheus():
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    counts[latency_bucket(0.3)] = 100  # all in (0.25, 0.5]
    assert quantile(0.5, counts) == pytest.approx(0.375)
    assert quantile(0.99, counts) == pytest.approx(0.25 + 0.25 * 0.99)
    counts[-1] = 100  # half beyond the last edge: Prometheus answers the highest finite edge
    assert quantile(0.99, counts) == LATENCY_BUCKETS[-1]
    assert quantile(0.5, [0] * len(counts)) is None


def test_bucket_edges_are_inclusive_upper_bounds():
    assert latency_bucket(2.0) == LATENCY_BUCKETS.index(2.0)
    assert latency_bucket(2.0001) == LATENCY_BUCKETS.index(2.5)
    assert latency_bucket(99) == len(LATENCY_BUCKETS)
    assert confidence_bin(1.0) == 19 and confidence_bin(0.0) == 0 and confidence_bin(0.051) == 1


def test_psi_of_the_reference_itself_is_zero_and_of_one_class_is_large():
    reference = [0.1] * 10
    objectives = Objectives(drift_min_samples=100)
    same = drift([50] * 10, reference, objectives)
    assert same["psi"] == pytest.approx(0.0) and same["state"] == "stable"
    skewed = drift([0, 500, 0, 0, 0, 0, 0, 0, 0, 0], reference, objectives)
    expected = 0.9 * math.log(1 / 0.1) + 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert skewed["psi"] == pytest.approx(expected, rel=1e-4)
    assert skewed["state"] == "drifting" and skewed["drifting"]
    few = drift([0, 5, 0, 0, 0, 0, 0, 0, 0, 0], reference, objectives)
    assert few["state"] == "insufficient_data" and not few["drifting"]


def test_error_budget_and_availability_of_a_window():
    counts = {"req": 100_000, "class:2xx": 99_995, "class:5xx": 5, "lat:3": 100_000}
    report = summarize(counts, 60, Objectives(), None)
    assert report["availability"] == pytest.approx(0.99995)
    assert report["error_budget_remaining"] == pytest.approx(0.5)  # half of the 0.01 % spent
    assert report["throughput_rps"] == pytest.approx(100_000 / 3600, rel=1e-3)
    assert report["latency_within_objective"] == 1.0
    assert summarize({}, 5, Objectives(), None)["availability"] is None


def test_windows_sum_the_newest_minutes_and_hours():
    windows = windows_of(Counts(minutes=[{"req": 1}] * 60, hours=[{"req": 60}] * 24))
    assert (windows["5m"]["req"], windows["1h"]["req"], windows["24h"]["req"]) == (5, 60, 1440)


def test_bulk_histogram_update_equals_one_observe_per_value():
    values = [0.01, 0.3, 0.3, 0.97, 1.0, 7.0]
    edges = (0.05, 0.5, 1.0)
    one, bulk = CollectorRegistry(), CollectorRegistry()
    observed = Histogram("h", "h", buckets=edges, registry=one)
    added = Histogram("h", "h", buckets=edges, registry=bulk)
    for v in values:
        observed.observe(v)
    counts = [0] * (len(edges) + 1)
    for v in values:
        counts[next((i for i, e in enumerate(edges) if v <= e), len(edges))] += 1
    add_bucketed(added, counts, sum(values))

    def without_created(registry):
        return [
            ln for ln in generate_latest(registry).decode().splitlines() if "_created" not in ln
        ]

    assert without_created(one) == without_created(bulk)


def test_importing_the_worker_tasks_leaves_prometheus_alone():
    """Flower imports `workers.tasks`: that must not move its metrics into the workers' files."""
    import os
    import subprocess
    import sys

    code = (
        "import os, workers.tasks, prometheus_client.values as v; "
        "print(os.environ.get('PROMETHEUS_MULTIPROC_DIR'), v.ValueClass is v.MutexValue)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["None", "True"]
