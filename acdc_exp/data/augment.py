"""Per-sample augmentation randomness shared by the FFCV and the torchvision loaders.

FFCV 1.0.2 seeds only the sample *order*; its crop and flip draw from numba's global random
state, so two runs of the same epoch differ. Here every random choice for a sample is drawn
from a Mersenne Twister seeded by ``(epoch key, sample index, salt)``: the result depends on
nothing else (not on worker count, thread scheduling or batches_ahead), and numba's seeded
``np.random`` reproduces NumPy's legacy ``RandomState`` exactly, so both loaders pick the same
crop box and flip for the same sample.

The functions below use only scalars and arrays so that numba can compile them unchanged.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np

# Draws per sample: 10 crop attempts x 4 uniforms (scale, log-ratio, row, column).
CROP_ATTEMPTS = 10
CROP_DRAWS = 4 * CROP_ATTEMPTS

# Salts keep the crop and flip streams of one sample independent.
SALT_CROP = 1
SALT_FLIP = 2
SALT_TRANSLATE = 3

_MIX = 2654435761  # Knuth's multiplicative constant; spreads consecutive indices apart
_SALT_MIX = 40503
_U32 = 4294967296


def epoch_key(seed: int, epoch: int) -> int:
    """A 32-bit key for (seed, epoch); SeedSequence hashes well even for seeds 0, 1, 2..."""
    return int(np.random.SeedSequence([seed % _U32, epoch % _U32]).generate_state(1)[0])


def sample_seed(key: int, index: int, salt: int) -> int:
    """32-bit MT seed of one sample; int64-safe for index < 2**31 so numba can run it."""
    return (key + index * _MIX + salt * _SALT_MIX) % _U32


def crop_from_uniforms(
    height: int, width: int, u: np.ndarray, scale_min: float, scale_max: float, log_ratio_min: float, log_ratio_max: float
) -> Tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box ``(top, left, h, w)`` from ``CROP_DRAWS`` uniforms.

    Up to ten tries of (area scale, log aspect ratio); if none fits, a center crop clamped to
    the allowed aspect ratios, exactly as torchvision falls back.
    """
    area = height * width
    for t in range(CROP_ATTEMPTS):
        target_area = area * (scale_min + (scale_max - scale_min) * u[4 * t])
        aspect = math.exp(log_ratio_min + (log_ratio_max - log_ratio_min) * u[4 * t + 1])
        w = int(math.floor(math.sqrt(target_area * aspect) + 0.5))
        h = int(math.floor(math.sqrt(target_area / aspect) + 0.5))
        if 0 < w <= width and 0 < h <= height:
            top = int(math.floor(u[4 * t + 2] * (height - h + 1)))
            left = int(math.floor(u[4 * t + 3] * (width - w + 1)))
            return top, left, h, w
    in_ratio = width / height
    ratio_min = math.exp(log_ratio_min)
    ratio_max = math.exp(log_ratio_max)
    if in_ratio < ratio_min:
        w = width
        h = int(math.floor(w / ratio_min + 0.5))
    elif in_ratio > ratio_max:
        h = height
        w = int(math.floor(h * ratio_max + 0.5))
    else:
        w = width
        h = height
    return (height - h) // 2, (width - w) // 2, h, w


def center_crop_box(height: int, width: int, ratio: float) -> Tuple[int, int, int, int]:
    """Square center crop of side ``ratio * short side``: the box FFCV's center-crop decoder uses."""
    side = int(ratio * min(height, width))
    return (height - side) // 2, (width - side) // 2, side, side


def crop_uniforms(key: int, index: int) -> np.ndarray:
    """The ``CROP_DRAWS`` uniforms of one sample (Python side of the shared stream)."""
    return np.random.RandomState(sample_seed(key, index, SALT_CROP)).random_sample(CROP_DRAWS)


def flip_decision(key: int, index: int) -> bool:
    """Whether the sample is flipped (probability 1/2), same stream as the FFCV flip op."""
    return bool(np.random.RandomState(sample_seed(key, index, SALT_FLIP)).random_sample() < 0.5)
