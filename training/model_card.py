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
Conv2D(32, 3x3, relu) -> MaxPool(2) -> Conv2D(64, 3x3, relu) -> MaxPool(2) -> Flatten ->
Dropout(0.5) -> Dense(10, softmax); {metadata["architecture"]["params"]:,} parameters.
{recipe}
{params["validation_split"]:.0%} of the training images held out for validation.

Augmentation: {augmentation}.

## Data
MNIST from `{data["source"]}`{subset}: {data["train_images"]:,} training,
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

## Caveats
- MNIST is US census staff and students' digits, 1990s: other scripts (e.g. continental 1
  and 7, crossed 7, open 4) and real-world scans are less accurate than the number above.
- Clean-test accuracy does not measure robustness to scans; see the evaluation reports.
- Confidence is not calibrated probability; thresholds should be set on held-out real data.
- Reference distributions for drift monitoring are in metadata.json (`reference`).
"""
