"""`python -m evaluation review-budget`: pick the review thresholds on the robustness dev split.

The sorting office's budget (README: the review budget): catch at least 80 % of the wrong
answers while flagging at most 15 %. For single digits the threshold is on the calibrated
digit confidence (`DIGITS_REVIEW_THRESHOLD`), for codes on the code's probability
(`DIGITS_POSTCODE_REVIEW_THRESHOLD`); codes the service flags whatever the threshold (wrong
length, nothing found) count as flagged at every threshold. Offline, with the workers' own
model and decoding code (`evaluation.run.OfflineReader`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluation import tradeoff
from evaluation.run import OfflineReader, evaluate, is_code_set


def main(sets: Path, model: Path, plot: Path | None) -> str:
    reader = OfflineReader(model, threshold=0.0, postcode_threshold=0.0)
    always: list[bool] = []
    """Per code, in order: flagged whatever the threshold (wrong length, nothing found)."""

    def read(row: dict[str, str], data: bytes) -> tuple:
        if not is_code_set(row["set"]):
            return reader.digit(data)
        answer = reader.read_postcode(data)
        always.append(bool(answer["needs_review"]))  # threshold 0: only hard reasons
        return answer["text"] or None, float(answer["probability"]), bool(answer["needs_review"])

    outcomes = evaluate(sets, read, workers=1)
    digit = [o for o in outcomes if not is_code_set(o.set)]
    code = [o for o in outcomes if is_code_set(o.set)]
    series = {
        "single digits": tradeoff.curve(
            np.array([o.confidence for o in digit]), np.array([o.correct for o in digit])
        ),
        "postal codes": tradeoff.curve(
            np.array([o.confidence for o in code]),
            np.array([o.correct for o in code]),
            np.array(always),
        ),
    }
    chosen = {name: tradeoff.choose(points) for name, points in series.items()}
    if plot:
        tradeoff.plot(series, chosen, plot)
    lines = [
        f"review budget on {sets} ({len(digit)} digits, {len(code)} codes), model {model}",
        f"(catch >= {tradeoff.CATCH_TARGET:.0%} of the wrong answers; budget: flag <= "
        f"{tradeoff.FLAG_BUDGET:.0%})",
        "",
        "| answers | errors | threshold | errors caught | flagged | within budget |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, p in chosen.items():
        group = digit if name == "single digits" else code
        errors = sum(not o.correct for o in group)
        fits = "yes" if p.flagged <= tradeoff.FLAG_BUDGET else "no"
        lines.append(
            f"| {name} | {errors} / {len(group)} | {p.threshold:.3f} | {p.caught:.1%} | "
            f"{p.flagged:.1%} | {fits} |"
        )
    sets_of_codes = sorted({o.set for o in code})
    if len(sets_of_codes) > 1:
        lines += ["", "At that code threshold, per set:", ""]
        lines += ["| set | exact | errors caught | flagged |", "|---|---:|---:|---:|"]
        t = chosen["postal codes"].threshold
        for set_name in sets_of_codes:
            idx = [i for i, o in enumerate(code) if o.set == set_name]
            wrong = np.array([not code[i].correct for i in idx])
            flagged = np.array([always[i] or code[i].confidence < t for i in idx])
            lines.append(
                f"| {set_name} | {1 - wrong.mean():.1%} | "
                f"{(flagged & wrong).sum() / max(wrong.sum(), 1):.1%} | {flagged.mean():.1%} |"
            )
    return "\n".join(lines)
