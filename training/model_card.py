"""MODEL_CARD.md for one version, rendered from its metadata (so the two never disagree)."""

from __future__ import annotations

from typing import Any


def _matrix_table(matrix: list[list[int]]) -> str:
    header = "| true \\ predicted | " + " | ".join(str(c) for c in range(10)) + " |"
    rule = "|---|" + "---:|" * 10
    rows = [
        f"| **{c}** | " + " | ".join(str(v) for v in row) + " |" for c, row in enumerate(matrix)
    ]
    return "\n".join([header, rule, *rows])


def _layers(metadata: dict[str, Any]) -> str:
    arch = metadata["architecture"]
    names = " -> ".join(arch["layers"])
    macs = f", {arch['multiply_adds']:,} multiply-adds per image" if "multiply_adds" in arch else ""
    return f"`{arch.get('name', 'notebook')}`: {names}; {arch['params']:,} parameters{macs}."


def _robustness(metadata: dict[str, Any]) -> str:
    rob = metadata.get("robustness")
    if not rob:
        return "Not scored (trained with `--no-robustness`)."
    base = rob.get("production") or {}
    theirs = base.get("sets") or {}
    head = "| set | this version |" + (f" production v{base['version']} |" if theirs else "")
    rule = "|---|---:|" + ("---:|" if theirs else "")
    rows = [
        f"| {name} | {score:.2%} |" + (f" {theirs[name]:.2%} |" if name in theirs else "")
        for name, score in rob["sets"].items()
    ]
    intro = (
        f"Held-out handwriting fonts never used in training (`evaluation/robust.py`, "
        f"{rob['split']} split, `{rob['generator']}`); codes: exact five-digit match, "
        "read without a directory."
    )
    return "\n".join([intro, "", head, rule, *rows])


def _calibration(metadata: dict[str, Any]) -> str:
    cal = metadata.get("calibration")
    if not cal:
        return "None: confidences are the raw softmax."
    return (
        f"Temperature scaling, T = {cal['temperature']}, fitted on {cal['fitted_on']}; "
        f"expected calibration error {cal['ece_before']:.4f} before, {cal['ece_after']:.4f} "
        "after. The workers apply it to every answer."
    )


def render(metadata: dict[str, Any]) -> str:
    m = metadata["metrics"]
    params = metadata["parameters"]
    data = metadata["data"]
    per_class = "\n".join(
        f"| {c} | {v['precision']:.4f} | {v['recall']:.4f} | {v['support']} |"
        for c, v in m["per_class"].items()
    )
    augmentation = (
        ", ".join(f"{k}={v}" for k, v in params["augmentation"].items())
        if params["augment"]
        else "none"
    )
    onnx_io = f"ONNX: input `{metadata['onnx']['input_name']}`, output "
    onnx_io += f"`{metadata['onnx']['output_name']}`."
    recipe = f"Adam, categorical cross-entropy, batch {params['batch_size']}, "
    recipe += f"{params['epochs']} epochs, seed {params['seed']},"
    reference = "Byte-identical to the reference MNIST: "
    reference += ("yes" if data["reference_mnist"] else "no") + " (array sha256 in metadata.json)."
    dirty = " plus uncommitted changes" if metadata["code"]["git_dirty"] else ""
    subset = f" (first {params['limit']} images only)" if params.get("limit") else ""
    return f"""# Model card: {metadata["name"]} version {metadata["version"]}

Created {metadata["created_at"]} from code `{metadata["code"]["git_commit"]}`{dirty}.

## Intended use
Classifies one handwritten digit (0-9) per image for the digits/postal-code reading service.
Input contract: float32 `(N, 28, 28, 1)` in [0, 1], white ink on black, the digit normalised
the MNIST way (ink cropped to its box, longer side 20 px, centred by mass in 28x28); output
`(N, 10)` softmax probabilities. {onnx_io}

Not for: letters or symbols (it always answers a digit; use the confidence to reject),
several digits in one image (segment first), images not normalised as above.

## Model
{_layers(metadata)}
{recipe}
{params["validation_split"]:.0%} of the training images held out for validation.

Augmentation: {augmentation}.
Synthetic styles (`training/synthetic.py`): {params.get("synthetic") or "none"}.

## Data
MNIST from `{data["source"]}`{subset}: {data["train_images"]:,} training
({data.get("synthetic_images", 0):,} of them synthetic),
{data["validation_images"]:,} validation, {data["test_images"]:,} test images.
{reference}

## Metrics (MNIST test set, computed with ONNX Runtime on `model.onnx`)
- accuracy **{m["test_accuracy"]:.4%}** ({m["errors"]} errors in {m["test_images"]:,} images)
- loss {m["test_loss"]:.4f}
- Keras/ONNX parity: max |p_keras - p_onnx| = {metadata["export_parity"]["max_abs_diff"]:.2e},
  argmax agreement {metadata["export_parity"]["argmax_agreement"]:.4%}

| class | precision | recall | support |
|---:|---:|---:|---:|
{per_class}

Confusion matrix (rows: true class, columns: predicted):

{_matrix_table(m["confusion_matrix"])}

## Robustness (writers outside MNIST)
{_robustness(metadata)}

## Calibration
{_calibration(metadata)}

## Caveats
- MNIST is US census staff and students' digits, 1990s; the robustness sets are fonts, not
  people: real writers can still differ from both.
- Calibration is fitted on MNIST-like and synthetic data; review thresholds are chosen on the
  robustness dev split (README: review budget).
- Reference distributions for drift monitoring are in metadata.json (`reference`).
"""
