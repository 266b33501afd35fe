"""CLI: `python -m evaluation generate|robust|run|review-budget|speed ...`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import environment
from common.settings import ServiceSettings
from evaluation.generate import generate
from evaluation.run import (
    OfflineReader,
    OnlineReader,
    default_model,
    evaluate,
    is_code_set,
    render,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write realistic image sets built from MNIST")
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--split", choices=("test", "train"), default="test")
    gen.add_argument("--n", type=int, default=250, help="wild images per category")
    gen.add_argument("--codes", type=int, default=500, help="five-digit postcodes")
    gen.add_argument("--clean", type=int, default=10_000, help="clean MNIST digits")
    gen.add_argument("--seed", type=int, default=None, help="default: 1 for test, 2 for train")
    rob = sub.add_parser("robust", help="write the robustness sets (held-out handwriting fonts)")
    rob.add_argument("--out", type=Path, required=True)
    rob.add_argument("--split", choices=("dev", "test"), default="test")
    rob.add_argument("--n", type=int, default=2000, help="single digits per set")
    rob.add_argument("--codes", type=int, default=600, help="codes per set")
    rob.add_argument(
        "--directory", type=Path, help="valid codes, one per line: adds directory_codes"
    )
    budget = sub.add_parser(
        "review-budget", help="choose review thresholds on dev sets; plot the trade-off"
    )
    budget.add_argument("--sets", type=Path, required=True, help="robustness dev sets")
    budget.add_argument("--model", type=Path, help="model.onnx (default: production alias)")
    budget.add_argument("--plot", type=Path, help="write the trade-off curve as a PNG")
    run = sub.add_parser("run", help="score a generated set")
    run.add_argument("--sets", type=Path, required=True)
    mode = run.add_mutually_exclusive_group(required=True)
    mode.add_argument("--url", help="base URL of the live service")
    mode.add_argument("--offline", action="store_true", help="in-process, ONNX Runtime")
    run.add_argument("--model", type=Path, help="offline: model.onnx (default: production alias)")
    run.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="offline: single-digit review threshold (default: $DIGITS_REVIEW_THRESHOLD)",
    )
    run.add_argument(
        "--postcode-threshold",
        type=float,
        default=None,
        help="offline: code review threshold (default: $DIGITS_POSTCODE_REVIEW_THRESHOLD)",
    )
    run.add_argument(
        "--directory", help="offline: valid codes file (default: $DIGITS_POSTCODE_DIRECTORY)"
    )
    run.add_argument("--workers", type=int, default=16, help="concurrent requests (online)")
    sub.add_parser("speed", help="time decode + normalise per image on one core")
    args = parser.parse_args(argv)

    if args.command == "speed":
        from evaluation.speed import main as speed

        print(speed())
        return 0

    if args.command == "robust":
        from evaluation.robust import generate as generate_robust

        manifest = generate_robust(args.out, args.split, args.n, args.codes, args.directory)
        print(f"wrote {manifest['counts']} (held-out fonts, {args.split}) to {args.out}")
        return 0

    if args.command == "review-budget":
        from evaluation.budget import main as budget_main

        print(budget_main(args.sets, args.model or default_model(), args.plot))
        return 0

    if args.command == "generate":
        seed = args.seed if args.seed is not None else (1 if args.split == "test" else 2)
        manifest = generate(args.out, args.split, args.n, args.codes, args.clean, seed)
        print(f"wrote {manifest['counts']} from MNIST {args.split} to {args.out}")
        return 0

    started = time.perf_counter()
    if args.offline:
        model = args.model or default_model()
        threshold = args.threshold
        if threshold is None:
            threshold = ServiceSettings().review_threshold
        off = OfflineReader(
            model,
            threshold,
            postcode_threshold=args.postcode_threshold,
            directory=args.directory,
        )
        outcomes = evaluate(
            args.sets,
            lambda row, data: (off.postcode if is_code_set(row["set"]) else off.digit)(data),
            workers=1,
        )
        title = f"offline, model {model}, {args.sets}"
    else:
        on = OnlineReader(args.url, environment.read("API_KEY", "") or None)

        def read(row: dict[str, str], data: bytes) -> tuple:
            ext = row["file"].rsplit(".", 1)[-1]
            fn = on.postcode if is_code_set(row["set"]) else on.digit
            return fn(data, ext)

        outcomes = evaluate(args.sets, read, workers=args.workers)
        title = f"live service {args.url}, {args.sets}"
    print(render(outcomes, title))
    print(f"\n({len(outcomes)} inputs in {time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
