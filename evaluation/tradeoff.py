"""The review trade-off: how many wrong answers a threshold catches for how many it flags.

`curve` sweeps the threshold over every distinct confidence; `choose` picks the default for
a sorting office's budget (catch at least 80 % of the wrong answers, flagging as few as
possible; the budget allows 15 %); `plot` draws flagged share against errors caught as a PNG with
Pillow only (no plotting stack in the image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CATCH_TARGET = 0.80
FLAG_BUDGET = 0.15


@dataclass(frozen=True)
class Point:
    threshold: float
    caught: float
    """Share of the wrong answers that are flagged."""
    flagged: float
    """Share of all answers that are flagged."""


def curve(confidence: np.ndarray, correct: np.ndarray, flagged_anyway: np.ndarray | None = None):
    """Points for thresholds at every distinct confidence (flag when confidence < t).

    `flagged_anyway`: answers the service flags whatever the threshold (no reading, wrong
    length)."""
    confidence = np.asarray(confidence, np.float64)
    wrong = ~np.asarray(correct, bool)
    always = np.zeros_like(wrong) if flagged_anyway is None else np.asarray(flagged_anyway, bool)
    thresholds = np.unique(np.concatenate([[0.0], confidence, [1.0 + 1e-9]]))
    points = []
    for t in thresholds:
        flagged = always | (confidence < t)
        caught = (flagged & wrong).sum() / max(wrong.sum(), 1)
        points.append(Point(float(t), float(caught), float(flagged.mean())))
    return points


def choose(points: list[Point], catch: float = CATCH_TARGET) -> Point:
    """The threshold that catches `catch` of the errors flagging the fewest answers.

    Catching comes first: a misread code sends mail to the wrong place, a flagged one costs a
    person a glance. Whether the flagged share then fits the budget is reported, not forced."""
    meeting = [p for p in points if p.caught >= catch] or points
    return min(meeting, key=lambda p: (p.flagged, p.threshold))


def plot(series: dict[str, list[Point]], chosen: dict[str, Point], out: Path) -> None:
    """Flagged share (x) against errors caught (y), one line per series, the budget shaded."""
    w, h, m = 720, 480, 60
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 13)
    except OSError:
        font = ImageFont.load_default()
    x_max = 0.5

    def xy(flagged: float, caught: float) -> tuple[float, float]:
        return m + min(flagged, x_max) / x_max * (w - 2 * m), h - m - caught * (h - 2 * m)

    d.rectangle([xy(0, 1), xy(FLAG_BUDGET, CATCH_TARGET)], fill=(222, 245, 222))
    for i in range(6):
        f = i * x_max / 5
        x, _ = xy(f, 0)
        d.line([(x, h - m), (x, h - m + 5)], fill="black")
        d.text((x - 12, h - m + 8), f"{f:.0%}", fill="black", font=font)
    for i in range(6):
        c = i / 5
        _, y = xy(0, c)
        d.line([(m - 5, y), (m, y)], fill="black")
        d.text((m - 45, y - 7), f"{c:.0%}", fill="black", font=font)
    d.rectangle([xy(0, 1), xy(x_max, 0)], outline="black")
    d.text((w / 2 - 90, h - 25), "answers flagged for review", fill="black", font=font)
    d.text((8, 10), "wrong answers caught", fill="black", font=font)
    d.text(
        (xy(0.22, 0.5)[0], xy(0, 0.5)[1]),
        f"budget (shaded): catch >= {CATCH_TARGET:.0%}, flag <= {FLAG_BUDGET:.0%}",
        fill=(30, 110, 30),
        font=font,
    )
    colours = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]
    for k, (name, points) in enumerate(series.items()):
        colour = colours[k % len(colours)]
        line = [xy(p.flagged, p.caught) for p in sorted(points, key=lambda p: p.flagged)]
        d.line(line, fill=colour, width=2)
        p = chosen.get(name)
        if p is not None:
            x, y = xy(p.flagged, p.caught)
            d.ellipse([x - 5, y - 5, x + 5, y + 5], outline=colour, width=2)
            label = f"{name}: t={p.threshold:.2f} flags {p.flagged:.1%}, catches {p.caught:.1%}"
        else:
            label = name
        y0 = h - m - 60 + 20 * k
        d.line([(w - m - 400, y0), (w - m - 380, y0)], fill=colour, width=3)
        d.text((w - m - 375, y0 - 7), label, fill="black", font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    im.save(out)
