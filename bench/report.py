"""The one table `python -m bench` prints, the target verdicts, and the JSON it writes."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path
from typing import Any

import orjson
import psutil

RESULTS_DIR = Path(__file__).resolve().parent / "results"

COLUMNS = ("section", "case", "rate", "p50 ms", "p95 ms", "p99 ms", "err", "202", "CPU (cores)")


def machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _cpu(cpu: dict[str, float | None]) -> str:
    short = {"api": "api", "workers": "wrk", "redis": "rds", "loadgen": "gen"}
    return " ".join(f"{short.get(k, k)} {v:.2f}" for k, v in cpu.items() if v is not None)


def _measured(section: str, case: str, rate: str, r: dict[str, Any], cpu: str) -> tuple[str, ...]:
    """One table row of a load step: its latency percentiles, errors and 202s."""
    latency = (_ms(r["p50_ms"]), _ms(r["p95_ms"]), _ms(r["p99_ms"]))
    return (section, case, rate, *latency, f"{r['errors']:g}", f"{r['accepted_202']:g}", cpu)


def model_ceiling(results: dict[str, Any]) -> float | None:
    """The raw model's images/s at batch 256 (the best thread count): the batch paths' limit."""
    return max(
        (m["images_per_s"] for m in results.get("model", []) if m["batch"] == 256), default=None
    )


def rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Table rows, one per measured case (medians over repeats)."""
    out: list[tuple[str, ...]] = []
    for r in results.get("model", []):
        case = f"batch {r['batch']}, {r['threads']} thread(s)"
        rate = f"{r['images_per_s']:,.0f} img/s"
        out.append(("1 model", case, rate, f"{r['ms_per_call']:.2f}", "", "", "", "", ""))
    for section, key in (("2 sync PNG", "sync"), ("5 sync JPEG", "jpeg")):
        for r in results.get(key, []):
            case = f"offered {r['offered_rps']:g} req/s"
            if r.get("requests_per_message"):
                case += f" ({r['requests_per_message']:.1f} req/message)"
            rate = f"{r['achieved_rps']:,.0f} req/s"
            out.append(_measured(section, case, rate, r, _cpu(r["cpu"])))
    if batch := results.get("batch"):
        case = f"{batch['images_per_request']:g} PNG/request, {batch['concurrency']:g} clients"
        rate = f"{batch['images_per_s']:,.0f} img/s"
        out.append(_measured("3 batch sync", case, rate, batch, _cpu(batch["cpu"])))
    if binary := results.get("binary_batch"):
        raw = model_ceiling(results)
        share = f" = {binary['images_per_s'] / raw:.0%} of the raw model" if raw else ""
        case = f"{binary['images_per_request']:g} UINT8 tensors/request (v2 binary){share}"
        rate = f"{binary['images_per_s']:,.0f} img/s"
        out.append(_measured("3b batch binary", case, rate, binary, _cpu(binary["cpu"])))
    if burst := results.get("burst"):
        case = (
            f"{burst['images']:g} img as {burst['trucks']:g} jobs: "
            f"drained in {burst['drain_s']:.1f} s, refused {burst.get('refused', 0):g}, "
            f"lost {burst['lost']:g}"
            if burst["drain_s"] is not None
            else f"{burst['images']:g} img: NOT drained, lost {burst['lost']:g}"
        )
        rate = f"{burst['images_per_s']:,.0f} img/s"
        out.append(("4 burst jobs", case, rate, "", "", "", f"{burst['submit_errors']:g}", ""))
        out[-1] += (_cpu(burst["cpu"]),)
        sync = burst["sync_during_burst"]
        case = f"sync probes during burst ({sync['offered_rps']:g} req/s)"
        out.append(_measured("4 burst jobs", case, f"{sync['achieved_rps']:,.0f} req/s", sync, ""))
    return out


def table(rows_: list[tuple[str, ...]], columns: tuple[str, ...] = COLUMNS) -> str:
    widths = [max(len(str(row[i])) for row in [columns, *rows_]) for i in range(len(columns))]
    line = "  ".join("-" * w for w in widths)

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([fmt(columns), line, *(fmt(r) for r in rows_)])


def markdown(rows_: list[tuple[str, ...]], columns: tuple[str, ...] = COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows_]
    return "\n".join(lines)


def _find(rows_: list[dict], rate: float) -> dict | None:
    return next((r for r in rows_ if r["offered_rps"] == rate), None)


def verdicts(results: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """(target, met?, measured) for each target of issue #8 that this run measured."""
    out: list[tuple[str, bool | None, str]] = []
    sync = results.get("sync", [])
    if r := _find(sync, 1000):
        met = (
            r["achieved_rps"] >= 990
            and r["p99_ms"] is not None
            and r["p99_ms"] <= 250
            and r["errors"] == 0
            and r["accepted_202"] == 0
        )
        measured = f"{r['achieved_rps']:.0f} req/s, p99 {_ms(r['p99_ms'])} ms"
        measured += f", {r['errors']:g} errors, {r['accepted_202']:g} x 202"
        out.append(("sync >= 1000 req/s, p99 <= 250 ms, 0 errors", met, measured))
    if r := _find(sync, 100):
        met = r["p99_ms"] is not None and r["p99_ms"] <= 50 and r["errors"] == 0
        out.append(("sync 100 req/s, p99 <= 50 ms", met, f"p99 {_ms(r['p99_ms'])} ms"))
    ceiling = model_ceiling(results)
    batch = results.get("batch")
    for name, key in (
        ("PNG batch path", "batch"),
        ("binary batch path (v2, issue 15)", "binary_batch"),
    ):
        measured = results.get(key)
        if measured and ceiling:
            share = measured["images_per_s"] / ceiling
            out.append(
                (
                    f"{name} >= 50% of the model limit",
                    share >= 0.5,
                    f"{measured['images_per_s']:,.0f} of {ceiling:,.0f} img/s = {share:.0%}",
                )
            )
    burst = results.get("burst")
    if burst:
        out.append(("burst: 0 lost", burst["lost"] == 0, f"lost {burst['lost']:g}"))
        if batch:
            share = burst["images_per_s"] / batch["images_per_s"]
            out.append(
                (
                    "burst drains at >= 50% of the batch path",
                    share >= 0.5,
                    f"{burst['images_per_s']:,.0f} img/s = {share:.0%}",
                )
            )
        sync = burst["sync_during_burst"]
        met = sync["p99_ms"] is not None and sync["p99_ms"] <= 2000 and sync["errors"] == 0
        met = met and sync["accepted_202"] == 0
        out.append(("sync during burst: p99 <= 2 s", met, f"p99 {_ms(sync['p99_ms'])} ms"))
    return out


def verdict_text(items: list[tuple[str, bool | None, str]]) -> str:
    return "\n".join(f"  [{'met ' if met else 'MISS'}] {name}: {got}" for name, met, got in items)


def write_json(results: dict[str, Any], name: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path
