"""Training-time augmentation that models what survives the service's MNIST-style normalisation.

Real inputs are cropped to their ink box, scaled to 20 px and centred by mass, so big shifts
never reach the model; what does differ from MNIST is slant/rotation, size within the box,
slight centring error and above all stroke width (pens, scanners, thresholds). One affine
warp per image (rotation, scale, shear, shift: a single interpolation, so no compounding blur)
then a random stroke-width change, all on whole batches in TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import tensorflow as tf


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 12.0
    scale: float = 0.12
    shear_deg: float = 8.0
    shift_px: float = 2.0
    thicken_prob: float = 0.25
    thin_prob: float = 0.15
    untouched_prob: float = 0.2
    """Share of each batch left exactly as MNIST, so clean accuracy does not drift."""

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _affine_transforms(batch: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Per-image 8-vectors mapping output pixels to input pixels around the image centre."""
    n = tf.shape(batch)[0]
    angle = tf.random.uniform([n], -1.0, 1.0) * math.radians(config.rotation_deg)
    shear = tf.random.uniform([n], -1.0, 1.0) * math.radians(config.shear_deg)
    scale = 1.0 + tf.random.uniform([n], -1.0, 1.0) * config.scale
    shift = tf.random.uniform([n, 2], -1.0, 1.0) * config.shift_px
    keep = tf.random.uniform([n]) < config.untouched_prob
    zero = tf.zeros([n])
    angle, shear = tf.where(keep, zero, angle), tf.where(keep, zero, shear)
    scale = tf.where(keep, tf.ones([n]), scale)
    shift = tf.where(keep[:, None], tf.zeros([n, 2]), shift)
    # inverse map: input = R(-a) * Shear(-s) * (output - centre - shift) / scale + centre
    cos, sin, tan = tf.cos(angle), tf.sin(angle), tf.tan(shear)
    a0, a1 = cos / scale, (-cos * tan + sin) / scale
    b0, b1 = -sin / scale, (sin * tan + cos) / scale
    centre = 13.5
    ox, oy = centre + shift[:, 0], centre + shift[:, 1]
    a2 = centre - a0 * ox - a1 * oy
    b2 = centre - b0 * ox - b1 * oy
    return tf.stack([a0, a1, a2, b0, b1, b2, zero, zero], axis=1)


def _stroke_width(images: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Blend towards a 3x3 dilation (thicker) or erosion (thinner) by a random amount."""
    n = tf.shape(images)[0]
    dilated = tf.nn.max_pool2d(images, 3, 1, "SAME")
    eroded = -tf.nn.max_pool2d(-images, 3, 1, "SAME")
    pick = tf.random.uniform([n, 1, 1, 1])
    amount = tf.random.uniform([n, 1, 1, 1], 0.3, 1.0)
    thick = pick < config.thicken_prob
    thin = (pick >= config.thicken_prob) & (pick < config.thicken_prob + config.thin_prob)
    out = tf.where(thick, images + amount * (dilated - images), images)
    return tf.where(thin, images + 0.7 * amount * (eroded - images), out)


def augment_batch(images: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """(N, 28, 28, 1) float32 in [0, 1] -> same shape, randomly warped and re-stroked."""
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=_affine_transforms(images, config),
        output_shape=tf.constant([28, 28]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return tf.clip_by_value(_stroke_width(warped, config), 0.0, 1.0)
