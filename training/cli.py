"""`python -m training train|registry ...`: train a new version, list/show/promote versions."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from common import environment, registry
from training.model import ARCHITECTURES
from training.synthetic import SyntheticConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train the MNIST CNN into the model registry and manage its versions.",
    )
    # registry options live on every subcommand so they can follow it (`train --name x`)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--models-dir",
        type=Path,
        default=registry.default_models_dir(),
        help="registry root (default: $DIGITS_MODELS_DIR or ./models)",
    )
    common.add_argument("--name", default="mnist_cnn", help="model name (default: mnist_cnn)")
    common.add_argument(
        "--mlflow",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="track and register in MLflow ($MLFLOW_TRACKING_URI, default var/mlflow/), "
        "aliases exported to aliases.json; --no-mlflow: the folder registry alone",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        parents=[common],
        help="train a new immutable version",
        description="Train on MNIST, export ONNX, evaluate, write models/<name>/<next version>/.",
    )
    train.add_argument("--epochs", type=int, default=15)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--limit", type=int, default=None, help="use the first N training images")
    train.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="scan-robustness augmentation: rotation, scale, shear, shift, stroke width",
    )
    train.add_argument(
        "--architecture",
        choices=ARCHITECTURES,
        default="wide",
        help="wide: the production successor; notebook: the reference CNN (training/model.py)",
    )
    train.add_argument(
        "--synthetic-mnist",
        type=int,
        default=SyntheticConfig.mnist_scans,
        help="re-captured MNIST training digits added (training/synthetic.py)",
    )
    train.add_argument(
        "--synthetic-fonts",
        type=int,
        default=SyntheticConfig.font_digits,
        help="digits drawn from the training fonts added",
    )
    train.add_argument("--label-smoothing", type=float, default=0.0)
    train.add_argument(
        "--robustness",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score the robustness sets (needs the held-out fonts) for the card and the gate",
    )
    train.add_argument(
        "--data", type=Path, default=None, help="an mnist.npz (default: $MNIST_NPZ, caches, PyPI)"
    )
    train.add_argument(
        "--reviewed",
        type=Path,
        default=None,
        help="reviewed examples (`reviews export --out`): 80 %% join training, 20 %% the gate",
    )
    train.add_argument(
        "--promote", action="store_true", help="promote to production if the rules allow"
    )

    reg = commands.add_parser("registry", help="list, show or promote versions")
    reg_commands = reg.add_subparsers(dest="registry_command", required=True)
    reg_commands.add_parser(
        "list", parents=[common], help="versions with their test accuracy and aliases"
    )
    show = reg_commands.add_parser("show", parents=[common], help="print a version's metadata.json")
    show.add_argument("version", help="a version number or an alias (e.g. production)")
    promote = reg_commands.add_parser(
        "promote",
        parents=[common],
        help="point the production alias at a version",
        description=(
            f"Refuses a version below {registry.MIN_ACCURACY:.1%} test accuracy or more than "
            f"{registry.MAX_REGRESSION * 100:.1f} points worse than production unless --force."
        ),
    )
    promote.add_argument("version", help="a version number or an alias")
    promote.add_argument("--alias", default=registry.PRODUCTION)
    promote.add_argument("--force", action="store_true", help="skip the accuracy rules")
    rollback = reg_commands.add_parser(
        "rollback",
        parents=[common],
        help="move an alias back to the version it pointed at before (MLflow records it)",
    )
    rollback.add_argument("--alias", default=registry.PRODUCTION)
    reg_commands.add_parser(
        "import-mlflow",
        parents=[common],
        help="register the folder versions MLflow lacks (a run each), and their aliases",
    )
    reg_commands.add_parser(
        "export",
        parents=[common],
        help="write the MLflow registry into the folder repository the workers read",
    )

    canary = commands.add_parser("canary", help="judge a canary on reviewed labels")
    canary_commands = canary.add_subparsers(dest="canary_command", required=True)
    judge = canary_commands.add_parser(
        "judge",
        parents=[common],
        help="may the candidate be promoted? (reviewed accuracy per version, 95 % CI)",
        description="Exit 0: promote (and promoted with --promote); 1: wait; 3: reject or the "
        "registry gate refused.",
    )
    judge.add_argument("--candidate", default="candidate", help="alias or version")
    judge.add_argument("--production", default=registry.PRODUCTION, help="alias or version")
    judge.add_argument("--min-reviews", type=int, default=30)
    judge.add_argument("--promote", action="store_true", help="promote it when the verdict says so")
    judge.add_argument(
        "--redis-url",
        default=environment.read("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="where the reviewed labels live (default: $DIGITS_REDIS_URL)",
    )
    judge.add_argument(
        "--prometheus-url",
        default=environment.read("PROMETHEUS_URL", "http://127.0.0.1:9090"),
        help="where each version's model time is counted (default: $DIGITS_PROMETHEUS_URL)",
    )
    judge.add_argument(
        "--latency-tolerance",
        type=float,
        default=None,
        help="the candidate may be this many times slower per image (default: 1.25)",
    )
    judge.add_argument("--no-latency", action="store_true", help="judge on reviewed accuracy alone")

    reviews = commands.add_parser("reviews", help="labelled examples from the review queue")
    reviews_commands = reviews.add_subparsers(dest="reviews_command", required=True)
    export = reviews_commands.add_parser("export", help="write the labelled examples as .npz")
    export.add_argument("--out", type=Path, required=True, help="the .npz file to write")
    export.add_argument(
        "--redis-url",
        default=environment.read("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="where the review queue lives (default: $DIGITS_REDIS_URL)",
    )
    return parser


def _list(models_dir: Path, name: str) -> int:
    infos = registry.list_versions(models_dir, name)
    if not infos:
        print(f"no versions of {name!r} in {models_dir}")
        return 0
    print(f"{'version':>7}  {'accuracy':>9}  {'loss':>7}  {'created':<25}  aliases")
    for info in infos:
        accuracy = f"{info.accuracy:.4%}" if info.accuracy is not None else "-"
        loss = f"{info.loss:.4f}" if info.loss is not None else "-"
        created = info.created_at or "-"
        print(
            f"{info.version:>7}  {accuracy:>9}  {loss:>7}  {created:<25}  {','.join(info.aliases)}"
        )
    return 0


def _train(args: argparse.Namespace) -> int:
    from training.train import TrainConfig, train

    wants_synthetic = args.synthetic_mnist or args.synthetic_fonts
    synthetic = (
        SyntheticConfig(args.synthetic_mnist, args.synthetic_fonts, args.seed)
        if wants_synthetic
        else None
    )
    result = train(
        TrainConfig(
            name=args.name,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            limit=args.limit,
            augment=args.augment,
            architecture=args.architecture,
            synthetic=synthetic,
            label_smoothing=args.label_smoothing,
            robustness=args.robustness,
            models_dir=args.models_dir,
            data_path=args.data,
            reviewed=args.reviewed,
        )
    )
    m = result.metadata["metrics"]
    print(
        f"version {result.version} written to {result.path}: test accuracy "
        f"{m['test_accuracy']:.4%}, loss {m['test_loss']:.4f}"
    )
    tracker = None
    if args.mlflow:
        from mlflow.exceptions import MlflowException

        try:
            tracker = _track_trained(args, result.version)
        except MlflowException as exc:
            print(
                f"error: MLflow: {exc}; the version folder is written, register it later with "
                "`python -m training registry import-mlflow`",
                file=sys.stderr,
            )
            return 4
    if args.promote:
        try:
            if tracker is not None:
                tracker.promote(args.models_dir, args.name, result.version)
            else:
                registry.promote(args.models_dir, args.name, result.version)
        except registry.PromotionRefusedError as exc:
            print(f"not promoted: {exc}", file=sys.stderr)
            return 3
        print(f"version {result.version} promoted to {registry.PRODUCTION}")
    return 0


def _track_trained(args: argparse.Namespace, version: int):  # -> training.tracking.Tracker
    """The new version as an MLflow run and registered version, aliased `candidate`."""
    from training.tracking import CANDIDATE, Tracker

    tracker = Tracker()
    tracker.import_folders(args.models_dir, args.name, below=version)
    mlflow_version = tracker.log_version(args.models_dir, args.name, version, source="train")
    tracker.set_alias(args.models_dir, args.name, CANDIDATE, version)
    print(
        f"MLflow ({tracker.uri}): {args.name} version {mlflow_version} registered, "
        f"alias {CANDIDATE}"
    )
    return tracker


def _registry_mlflow(args: argparse.Namespace) -> int:
    """The registry verbs that go through MLflow (promote, rollback, import, export)."""
    from training.tracking import Tracker

    tracker = Tracker()
    models_dir, name = args.models_dir, args.name
    command = args.registry_command
    if command == "import-mlflow":
        added = tracker.import_folders(models_dir, name)
        report = tracker.export(models_dir, name)
        print(f"registered in MLflow: {added or 'nothing new'}; aliases {report.aliases}")
        return 0
    if command == "export":
        tracker.import_folders(models_dir, name)
        report = tracker.export(models_dir, name)
        print(
            f"exported to {models_dir}: versions {report.written or 'none new'}, "
            f"aliases {report.aliases}"
        )
        return 0
    if command == "rollback":
        version, _ = tracker.rollback(models_dir, name, args.alias)
    else:
        report = tracker.promote(models_dir, name, args.version, alias=args.alias, force=args.force)
        version = report.aliases[args.alias]
    print(f"{name} {args.alias} -> version {version}")
    return 0


def _judge(args: argparse.Namespace) -> int:
    from training import canary

    candidate = registry.resolve(args.models_dir, args.name, args.candidate).name
    production = registry.resolve(args.models_dir, args.name, args.production).name
    by_version = canary.scores(canary.read_labelled(args.redis_url))
    mine = by_version.get(candidate, canary.VersionScore(candidate, 0, 0))
    theirs = by_version.get(production, canary.VersionScore(production, 0, 0))
    latency = (
        None if args.no_latency else canary.read_latency(args.prometheus_url, candidate, production)
    )
    tolerance = args.latency_tolerance or canary.LATENCY_TOLERANCE
    verdict = canary.judge(mine, theirs, args.min_reviews, latency, tolerance)
    print(canary.report(mine, theirs, verdict, latency))
    if verdict.decision != "promote":
        return 1 if verdict.decision == "wait" else 3
    if args.promote:
        try:
            if args.mlflow:
                from training.tracking import Tracker

                Tracker().promote(args.models_dir, args.name, int(candidate))
            else:
                registry.promote(args.models_dir, args.name, int(candidate))
        except registry.PromotionRefusedError as exc:
            print(f"not promoted: {exc}", file=sys.stderr)
            return 3
        print(f"{args.name} {registry.PRODUCTION} -> version {candidate}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "canary":
            return _judge(args)
        if args.command == "reviews":
            from training.reviews import export_labelled

            count = export_labelled(args.redis_url, args.out)
            print(f"{count} labelled examples written to {args.out}")
            return 0
        if args.registry_command == "list":
            return _list(args.models_dir, args.name)
        if args.registry_command == "show":
            metadata = registry.read_metadata(args.models_dir, args.name, args.version)
            print(json.dumps(metadata, indent=2))
            return 0
        if args.mlflow:
            from mlflow.exceptions import MlflowException

            try:
                return _registry_mlflow(args)
            except MlflowException as exc:
                print(f"error: MLflow: {exc}", file=sys.stderr)
                return 2
        if args.registry_command != "promote":
            print(f"error: registry {args.registry_command} needs MLflow", file=sys.stderr)
            return 2
        version = registry.promote(
            args.models_dir, args.name, args.version, alias=args.alias, force=args.force
        )
        print(f"{args.name} {args.alias} -> version {version}")
        return 0
    except registry.RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
