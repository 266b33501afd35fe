"""Digit glyphs from handwriting-like fonts shipped by Debian packages.

Two disjoint font lists: `TRAIN_FONTS` feed the synthetic training styles, `HELDOUT_FONTS`
only ever feed the robustness evaluation (`evaluation.robust`), so a robustness score is a
score on writers' styles the model has never seen. No font data lives in the repository:
`scripts/ensure-tools.sh fonts` installs `FONT_PACKAGES`, and a missing font is an error that
names its package.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))

TRAIN_FONTS = {
    "fonts-bwht": (
        "BecauseWeBuild-Regular.otf",
        "BecauseWeConnect-Regular.otf",
        "BecauseWeCreate-Regular.otf",
        "BecauseWeOrganize-Regular.otf",
    ),
    "fonts-comic-neue": (
        "ComicNeue-Regular.otf",
        "ComicNeue-Bold.otf",
        "ComicNeue-Italic.otf",
        "ComicNeue-Light.otf",
    ),
    "fonts-dancingscript": ("DancingScript-Regular.otf", "DancingScript-Bold.otf"),
    "fonts-havana": ("Havana-Regular.otf",),
    "fonts-kaushanscript": ("KaushanScript-Regular.otf",),
    "fonts-lobster": ("lobster.otf",),
    "fonts-klee": ("KleeOne-Regular.ttf", "KleeOne-SemiBold.ttf"),
    "fonts-leckerli-one": ("LeckerliOne-Regular.ttf",),
    "fonts-dustin": (
        "PenguinAttack.ttf",
        "El_Abogado_Loco.ttf",
        "Dustismo.ttf",
        "dustismo_bold.ttf",
        "dustismo_italic.ttf",
        "Dustismo_Roman_Italic.ttf",
    ),
    "fonts-seto": ("setofont.ttf",),
    "fonts-kiloji": ("kiloji.ttf", "kiloji_b.ttf", "kiloji_p.ttf"),
    "fonts-aoyagi-kouzan-t": ("AoyagiKouzanT.ttf",),
    "fonts-aoyagi-soseki": ("aoyagi-soseki.ttf",),
    "fonts-kouzan-mouhitsu": (
        "KouzanBrushFontSousyo.ttf",
        "kouzan-mouhitsu-gyosho.ttf",
        "kouzan-mouhitsu.ttf",
    ),
    "fonts-tlwg-purisa-ttf": ("Purisa.ttf", "Purisa-Oblique.ttf", "Purisa-Bold.ttf"),
    "fonts-tlwg-sawasdee-ttf": ("Sawasdee-Oblique.ttf",),
    "fonts-tlwg-umpush-ttf": ("Umpush-LightOblique.ttf",),
    "fonts-sil-andika": ("Andika-Italic.ttf",),
    "fonts-cabin": ("Cabin-Italic.otf",),
    "fonts-dejavu-core": ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSans-Oblique.ttf"),
    "fonts-liberation": ("LiberationSans-Italic.ttf", "LiberationSerif-Italic.ttf"),
    "fonts-freefont-ttf": ("FreeSansOblique.ttf", "FreeMono.ttf", "FreeSerifItalic.ttf"),
}
"""Handwriting (Latin, and the Latin digits of Japanese and Thai handwriting fonts) and a few
printed faces; printed digits teach shapes MNIST lacks (serif 1s)."""

HELDOUT_FONTS = {
    "fonts-sjfonts": ("SteveHand.ttf", "Delphine.ttf"),
    "fonts-breip": ("Breip.ttf",),
    "fonts-dkg-handwriting": ("dkg.ttf", "dkgBd.ttf", "dkgIt.ttf"),
    "fonts-humor-sans": ("Humor-Sans.ttf",),
    "fonts-kristi": ("Kristi.ttf",),
    "fonts-bwht": ("BecauseWeLearn-Regular.otf", "BecauseWeMentor-Regular.otf"),
    "fonts-dustin": ("Domestic_Manners.ttf", "Junkyard.ttf"),
    "fonts-rufscript": ("Rufscript010.ttf",),
}
"""Never used for training: the robustness sets' writers."""

FONT_PACKAGES = tuple(sorted(set(TRAIN_FONTS) | set(HELDOUT_FONTS)))
GLYPH_PX = 96
"""Glyphs are drawn at this size, then scaled: plenty for the 8x8 to 120 px renderings."""


INK_LEVEL = 0.05
"""Coverage above which a pixel counts as ink when cropping a glyph or a styled digit."""


def crop_ink(ink: np.ndarray) -> np.ndarray:
    """Coverage cropped to its ink's bounding box (unchanged when there is no ink)."""
    ys, xs = np.nonzero(ink > INK_LEVEL)
    if ys.size == 0:
        return ink
    return ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


class FontsMissing(RuntimeError):
    """A font file is not installed; the message names the Debian packages to install."""


def _font_dirs() -> list[Path]:
    extra = os.environ.get("DIGITS_FONT_DIR")
    return ([Path(extra)] if extra else []) + list(FONT_DIRS)


@functools.cache
def _index() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in _font_dirs():
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.suffix.lower() in (".ttf", ".otf"):
                    found.setdefault(path.name, path)
    return found


def font_paths(catalogue: dict[str, tuple[str, ...]]) -> list[Path]:
    """The catalogue's files, in a stable order; every one must be installed."""
    index = _index()
    missing = {pkg for pkg, files in catalogue.items() for f in files if f not in index}
    if missing:
        raise FontsMissing(
            f"fonts missing; install the Debian packages {' '.join(sorted(missing))} "
            "(`scripts/ensure-tools.sh fonts` does it)"
        )
    return [index[f] for files in catalogue.values() for f in files]


@functools.cache
def glyph(path: Path, digit: int) -> np.ndarray:
    """The digit drawn in `path`'s font: ink coverage float32 0..1, cropped to its box."""
    font = ImageFont.truetype(str(path), GLYPH_PX)
    canvas = Image.new("L", (GLYPH_PX * 2, GLYPH_PX * 2), 0)
    ImageDraw.Draw(canvas).text((GLYPH_PX // 2, GLYPH_PX // 4), str(digit), font=font, fill=255)
    ink = np.asarray(canvas, np.float32) / 255.0
    if not (ink > INK_LEVEL).any():
        raise FontsMissing(f"{path.name} has no glyph for {digit}")
    return crop_ink(ink)


def missing_packages() -> list[str]:
    """Debian packages whose font files are not installed (empty: all present)."""
    index = _index()
    both = [TRAIN_FONTS, HELDOUT_FONTS]
    return sorted({pkg for c in both for pkg, files in c.items() for f in files if f not in index})


if __name__ == "__main__":  # `python -m training.fonts`: what scripts/ensure-tools.sh installs
    print(" ".join(missing_packages()))
