"""The benchmark harness end to end at tiny rates: every section produces its rows, 0 lost.

Speed is measured by `make bench`, never asserted here: this only proves the harness works.
"""

from __future__ import annotations

import orjson
import pytest

from bench.__main__ import main
from bench.report import RESULTS_DIR

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_smoke_run_writes_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--smoke", "--out", "pytest-smoke"]) == 0
    printed = capsys.readouterr().out
    path = max(RESULTS_DIR.glob("pytest-smoke-*.json"), key=lambda p: p.stat().st_mtime)
    results = orjson.loads(path.read_bytes())

    assert [row["batch"] for row in results["model"]] == [1, 32]
    assert all(row["images_per_s"] > 0 for row in results["model"])
    assert [step["offered_rps"] for step in results["sync"]] == [10, 20]
    assert [step["offered_rps"] for step in results["jpeg"]] == [5]
    for step in results["sync"] + results["jpeg"]:
        assert step["errors"] == 0
        assert step["ok"] + step["accepted_202"] == step["sent"]
        assert set(step["cpu"]) == {"api", "workers", "redis", "loadgen"}
    assert results["batch"]["ok"] > 0 and results["batch"]["errors"] == 0
    burst = results["burst"]
    assert burst["submitted"] == burst["trucks"] == 4
    assert burst["lost"] == 0 and burst["failed"] == 0
    assert burst["sync_during_burst"]["errors"] == 0
    for section in ("1 model", "2 sync PNG", "3 batch sync", "4 burst jobs", "5 sync JPEG"):
        assert section in printed
    path.unlink()
