"""Write the US ZIP codes of the PyPI package `zipcodes` as a `DIGITS_POSTCODE_DIRECTORY` file.

    .venv/bin/python scripts/us_zip_directory.py --out var/us-zip.txt [--active-only]
    DIGITS_POSTCODE_DIRECTORY=var/us-zip.txt make run

`zipcodes` (3.x, in requirements/dev.txt only, never in the serving images) embeds the
dataset in its extension module; `zipcodes.list_all()` returns one dict per ZIP code with
`zip_code` ("00501", five ASCII digits), `active` (bool), `zip_code_type` (STANDARD,
PO BOX, UNIQUE, MILITARY), city, state, ... Version 3.0.0: 42,789 codes, 41,749 active.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def zip_codes(active_only: bool = False) -> list[str]:
    import zipcodes

    return sorted(
        {z["zip_code"] for z in zipcodes.list_all() if z.get("active") or not active_only}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the text file to write")
    parser.add_argument(
        "--active-only", action="store_true", help="leave out ZIP codes no longer in use"
    )
    args = parser.parse_args(argv)
    import zipcodes

    codes = zip_codes(args.active_only)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    header = f"# US ZIP codes from the PyPI package zipcodes {zipcodes.__version__}\n"
    args.out.write_text(header + "\n".join(codes) + "\n", encoding="ascii")
    print(f"{len(codes)} codes written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
