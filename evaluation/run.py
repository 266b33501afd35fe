"""Run generated sets through the live service (or the same code in-process) and score them.

Online: `POST /v1/predict` (single digits, raw image body) and `POST /v1/postcodes?length=5`
from a thread pool. Offline: the workers' own code in-process, for fast iteration without a
service: `common.imaging` + `common.segmentation`, the model as the workers load it
(`workers.model.DigitModel`: ONNX Runtime plus the calibration in its metadata.json) and the
same code reading (`common.postcode.assemble`: directory decoding, code probability, review
rule), with the service's settings from the environment (`DIGITS_POSTCODE_REVIEW_THRESHOLD`,
`DIGITS_POSTCODE_DIRECTORY`). Both print one table per category and a review-threshold table
(errors caught vs inputs flagged).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import registry
from common.decoding import PostcodeDirectory
from common.imaging import ImageError, decode, normalise
from common.postcode import assemble
from common.segmentation import segment
from common.settings import ServiceSettings
from evaluation import robust

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99)
CODE_SETS = ("postcodes", *robust.CODE_SETS)
"""Sets of whole postal codes (`evaluation.generate` and `evaluation.robust`): exact match."""
SURE = 0.99
"""Confidence at which a wrong answer counts as "confidently wrong" in the report."""


def is_code_set(name: str) -> bool:
    return name in CODE_SETS


CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg"}


@dataclass
class Outcome:
    set: str
    category: str
    label: str
    predicted: str | None
    confidence: float
    """single digits: the digit's (calibrated) confidence; postcodes: the code's probability."""
    needs_review: bool
    error: str | None = None

    @property
    def correct(self) -> bool:
        return self.predicted == self.label


def read_labels(sets: Path) -> list[dict[str, str]]:
    with open(sets / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- offline


class OfflineReader:
    """The workers' model, calibration and code reading, in-process (one implementation)."""

    def __init__(
        self,
        model_path: Path,
        threshold: float,
        *,
        postcode_threshold: float | None = None,
        directory: PostcodeDirectory | str | None = None,
    ) -> None:
        """`model_path`: a version's model.onnx (its folder's metadata.json gives the
        calibration). `threshold`: single digits. `postcode_threshold` and `directory` (a
        `PostcodeDirectory`, a path, or "" for none) default to the service's
        `DIGITS_POSTCODE_REVIEW_THRESHOLD` / `DIGITS_POSTCODE_DIRECTORY` from the environment."""
        from workers.model import DigitModel, ModelRef  # onnxruntime: only offline runs

        folder = Path(model_path).parent
        self.model = DigitModel(ModelRef(folder.parent.name, folder.name, folder))
        self.threshold = threshold
        settings = ServiceSettings()
        self.postcode_threshold = (
            settings.postcode_review_threshold if postcode_threshold is None else postcode_threshold
        )
        if directory is None:
            directory = settings.postcode_directory
        if isinstance(directory, str | Path):  # "" = no directory
            directory = PostcodeDirectory.load(directory) if str(directory) else None
        self.directory = directory

    def probs(self, images: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, exactly as the workers compute them."""
        return self.model.predict(images)

    def digit(self, data: bytes) -> tuple[str | None, float, bool]:
        norm = normalise(decode(data))
        if norm.blank:
            return None, 0.0, True
        p = self.probs(norm.image[None])[0]
        conf = float(p.max())
        return str(int(p.argmax())), conf, conf < self.threshold

    def read_postcode(self, data: bytes, length: int | None = 5) -> dict:
        """The answer the service gives for one code image (the `postcodes[0]` entry)."""
        seg = segment(decode(data), expected=length)
        p = (
            self.probs(np.stack([c.image for c in seg.crops]))
            if seg.crops
            else np.zeros((0, 10), np.float32)
        )
        return assemble(
            p,
            seg.boxes,
            expected_length=length,
            threshold=self.postcode_threshold,
            doubtful=seg.doubtful,
            segmentation=seg.reasons,
            directory=self.directory,
        )

    def postcode(self, data: bytes) -> tuple[str | None, float, bool]:
        res = self.read_postcode(data)
        return res["text"] or None, float(res["probability"]), bool(res["needs_review"])


def default_model() -> Path:
    """The production version's model.onnx, as the workers resolve it."""
    return registry.resolve(registry.default_models_dir(), "mnist_cnn") / "model.onnx"


# --------------------------------------------------------------------------- online


class OnlineReader:
    """The live HTTP contract (README: HTTP API)."""

    def __init__(self, url: str, api_key: str | None) -> None:
        import httpx

        headers = {"X-API-Key": api_key} if api_key else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), timeout=30.0, headers=headers)

    def _post(self, path: str, data: bytes, ext: str) -> dict:
        resp = self.client.post(path, content=data, headers={"Content-Type": CONTENT_TYPES[ext]})
        if resp.status_code >= 400:
            raise ImageError(f"http_{resp.status_code}", resp.text[:200])
        return resp.json()

    def digit(self, data: bytes, ext: str) -> tuple[str | None, float, bool]:
        pred = self._post("/v1/predict", data, ext)["predictions"][0]
        digit = pred.get("digit")
        return (
            None if digit is None else str(digit),
            float(pred.get("confidence") or 0.0),
            bool(pred.get("needs_review")),
        )

    def postcode(self, data: bytes, ext: str) -> tuple[str | None, float, bool]:
        body = self._post("/v1/postcodes?length=5", data, ext)
        code = (body.get("postcodes") or [body])[0]
        probability = code.get("probability", code.get("confidence"))
        return code.get("text") or None, float(probability or 0.0), bool(code.get("needs_review"))


# --------------------------------------------------------------------------- scoring


def evaluate(
    sets: Path, reader: Callable[[dict[str, str], bytes], tuple], workers: int
) -> list[Outcome]:
    rows = read_labels(sets)

    def one(row: dict[str, str]) -> Outcome:
        data = (sets / row["file"]).read_bytes()
        try:
            pred, conf, review = reader(row, data)
            return Outcome(row["set"], row["category"], row["label"], pred, conf, review)
        except ImageError as exc:
            return Outcome(row["set"], row["category"], row["label"], None, 0.0, True, exc.code)

    if workers <= 1:
        return [one(r) for r in rows]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, rows))


def accuracy_table(outcomes: Iterable[Outcome]) -> list[tuple[str, int, float, float, float]]:
    """(category, n, accuracy, flagged fraction, accuracy of the unflagged) rows; wild also
    gets an overall row. "Flagged" is the service's (or offline: the same) needs_review."""
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        key = f"wild/{o.category}" if o.set == "wild" else o.set
        groups[key].append(o)
        if o.set == "wild":
            groups["wild (all)"].append(o)

    def rank(key: str) -> tuple:
        return (key != "clean", not key.startswith("wild"), is_code_set(key), key)

    order = sorted(groups, key=rank)
    rows = []
    for key in order:
        g = groups[key]
        accepted = [o for o in g if not o.needs_review]
        rows.append(
            (
                key,
                len(g),
                sum(o.correct for o in g) / len(g),
                sum(o.needs_review for o in g) / len(g),
                sum(o.correct for o in accepted) / max(len(accepted), 1),
            )
        )
    return rows


def threshold_table(
    outcomes: list[Outcome], thresholds: Iterable[float] = THRESHOLDS
) -> list[tuple[float, float, float, float]]:
    """(threshold, errors caught, inputs flagged, accuracy of unflagged) for digit confidences.

    A prediction is flagged when its confidence is below the threshold or it has no answer.
    """
    rows = []
    for t in thresholds:
        flagged = np.array([o.predicted is None or o.confidence < t for o in outcomes])
        wrong = np.array([not o.correct for o in outcomes])
        caught = (flagged & wrong).sum() / max(wrong.sum(), 1)
        kept = ~flagged
        acc_kept = (~wrong & kept).sum() / max(kept.sum(), 1)
        rows.append((t, float(caught), float(flagged.mean()), float(acc_kept)))
    return rows


def render(outcomes: list[Outcome], title: str) -> str:
    lines = [
        f"## {title}",
        "",
        "| set | n | accuracy | flagged for review | accuracy of the unflagged |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, n, acc, flag, acc_ok in accuracy_table(outcomes):
        label = f"{key} (exact match)" if is_code_set(key) else key
        lines.append(f"| {label} | {n} | {acc:.2%} | {flag:.1%} | {acc_ok:.2%} |")
    errors = [o for o in outcomes if o.error]
    if errors:
        codes = sorted({o.error or "" for o in errors})
        lines.append(f"\n{len(errors)} inputs were refused: {', '.join(codes)}")
    digits = [o for o in outcomes if not is_code_set(o.set)]
    if digits:
        sure_wrong = sum(1 for o in digits if not o.correct and o.confidence >= SURE)
        lines.append(
            f"\nConfidently wrong single digits (confidence >= {SURE}): {sure_wrong} in "
            f"{len(digits)} ({sure_wrong * 1800 / len(digits):.1f} per 1,800)"
        )
    for name, subset in (
        ("single digits", digits),
        ("wild single digits", [o for o in outcomes if o.set == "wild"]),
        ("postal codes (code probability)", [o for o in outcomes if is_code_set(o.set)]),
    ):
        if not subset:
            continue
        lines += [
            "",
            f"Review threshold, {name}: {sum(not o.correct for o in subset)} errors "
            f"in {len(subset)}",
            "",
            "| threshold | errors caught | inputs flagged | accuracy of the rest |",
            "|---:|---:|---:|---:|",
        ]
        for t, caught, flagged, acc in threshold_table(subset):
            lines.append(f"| {t:.2f} | {caught:.1%} | {flagged:.1%} | {acc:.2%} |")
    return "\n".join(lines)
