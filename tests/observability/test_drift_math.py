"""Drift from Prometheus' answers: PSI against the training reference and against the day
before; and the import-order guard of the workers' metrics."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from api.observability.slo import DriftRule, drift, psi
from workers.metrics import reference_of

REFERENCE = [0.1] * 10
RULE = DriftRule(psi=0.2, min_samples=200)


def test_psi_of_the_reference_itself_is_zero_and_of_one_class_is_large():
    assert psi(REFERENCE, REFERENCE) == pytest.approx(0.0)
    assert psi([1.0] + [0.0] * 9, REFERENCE) > 2


def test_too_few_samples_are_not_judged():
    report = drift([10.0] * 10, REFERENCE, [], RULE)
    assert report["state"] == "insufficient_data" and report["samples"] == 100


def test_a_skewed_mix_with_no_baseline_is_drifting():
    counts = [600.0] + [30.0] * 9
    report = drift(counts, REFERENCE, [0.0] * 10, RULE)
    assert report["state"] == "drifting" and report["drifting"]
    assert report["psi"] > 0.2 and report["baseline_psi"] is None


def test_a_skewed_mix_that_was_the_same_the_day_before_is_this_offices_usual_mix():
    """Real mail is never uniform: unlike the training set, like yesterday, is not drift."""
    counts = [600.0] + [30.0] * 9
    yesterday = [5900.0] + [310.0] * 9
    report = drift(counts, REFERENCE, yesterday, RULE)
    assert report["psi"] > 0.2 and report["baseline_psi"] < 0.01
    assert report["state"] == "usual_mix" and not report["drifting"]


def test_a_change_from_the_day_before_is_drifting_even_near_the_reference():
    today = [600.0] + [30.0] * 9
    yesterday = [30.0] * 9 + [600.0]
    report = drift(today, REFERENCE, yesterday, RULE)
    assert report["baseline_psi"] > 0.2 and report["state"] == "drifting"


def test_the_reference_comes_from_the_versions_metadata():
    metadata = {
        "reference": {
            "test_predicted_class_distribution": REFERENCE,
            "test_confidence_histogram": {"fractions": [0.05] * 20},
        }
    }
    assert reference_of(metadata) == (REFERENCE, [0.05] * 20)
    assert reference_of({}) == ([], [])


def test_importing_the_worker_tasks_leaves_prometheus_alone():
    """Flower imports `workers.tasks`: that must not move its metrics into the workers' files."""
    code = (
        "import os, workers.tasks, prometheus_client.values as v; "
        "print(os.environ.get('PROMETHEUS_MULTIPROC_DIR'), v.ValueClass is v.MutexValue)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["None", "True"]
