"""The shared crop/flip draws: torchvision's RandomResizedCrop rules, Python == numba."""

from __future__ import annotations

import math

import numba
import numpy as np

from acdc_exp.data.augment import (
    CROP_DRAWS,
    SALT_CROP,
    center_crop_box,
    crop_from_uniforms,
    crop_uniforms,
    epoch_key,
    flip_decision,
    sample_seed,
)

LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))


def test_random_boxes_follow_scale_and_ratio_limits():
    rng = np.random.default_rng(0)
    for _ in range(500):
        height, width = (int(v) for v in rng.integers(20, 600, size=2))
        box = crop_from_uniforms(height, width, rng.random(CROP_DRAWS), 0.25, 1.0, *LOG_RATIO)
        top, left, h, w = box
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
        # draws of 2.0 ask for more than the whole area, which forces the fallback box
        fallback = crop_from_uniforms(height, width, np.full(CROP_DRAWS, 2.0), 0.25, 1.0, *LOG_RATIO)
        if box != fallback:
            assert 0.25 * height * width * 0.9 <= h * w <= height * width
            assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1


def test_fallback_is_a_ratio_clamped_center_crop():
    # all draws 1.0 -> scale 1 with the widest ratio: never fits a 10x100 strip
    top, left, h, w = crop_from_uniforms(10, 100, np.ones(CROP_DRAWS), 0.9, 1.0, *LOG_RATIO)
    assert (h, w) == (10, 13) and top == 0 and left == (100 - 13) // 2
    assert center_crop_box(256, 300, 0.875) == (16, 38, 224, 224)


def test_numba_draws_equal_python_draws():
    """The FFCV ops draw in numba, the folder loader in Python: same seed, same numbers."""

    @numba.njit
    def numba_uniforms(key, index):
        np.random.seed(np.uint32(sample_seed_jit(key, np.int64(index), SALT_CROP)))
        return np.random.random(CROP_DRAWS)

    sample_seed_jit = numba.njit(sample_seed)
    key = epoch_key(7, 3)
    for index in (0, 1, 12345, 2**31 - 1):
        assert np.array_equal(numba_uniforms(key, index), crop_uniforms(key, index))


def test_keys_separate_seeds_epochs_and_samples():
    keys = {epoch_key(s, e) for s in range(5) for e in range(5)}
    assert len(keys) == 25 and all(0 <= k < 2**32 for k in keys)
    flips = [flip_decision(epoch_key(0, 0), i) for i in range(1000)]
    assert 430 < sum(flips) < 570  # about half flipped
