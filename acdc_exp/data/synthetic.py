"""Deterministic ImageNet-layout JPEG trees for tests and the loader benchmark.

Each class has its own base colour (``class_colour``) under a zero-mean diagonal texture, so a
crop or flip changes the pixels but the mean colour of any crop still names the class.
Optionally the first train image of class 0 is a grayscale JPEG (class 0 is gray, so it stays
recognisable) and the first train image of class 1 a CMYK JPEG, the two odd kinds ImageNet has.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from acdc_exp.errors import DataError

_PALETTE = [
    (128, 128, 128),
    (200, 50, 50),
    (50, 200, 50),
    (50, 50, 200),
    (200, 200, 50),
    (200, 50, 200),
    (50, 200, 200),
    (230, 140, 40),
]
TEXTURE = 25  # amplitude of the texture; palette colours are >= 100 apart per channel


def class_colour(index: int) -> Tuple[int, int, int]:
    """Base RGB colour of class ``index`` (beyond the palette: a seeded pseudo-random colour)."""
    if index < len(_PALETTE):
        return _PALETTE[index]
    rng = np.random.default_rng(index)
    return tuple(int(v) for v in rng.integers(40, 216, size=3))


def _image(rng: np.random.Generator, colour: Sequence[int], height: int, width: int, noise: float) -> np.ndarray:
    period = rng.uniform(20.0, 60.0)
    yy, xx = np.mgrid[0:height, 0:width]
    # asymmetric stripes: horizontal flips and crops are visible in the pixels
    wave = np.sin((xx + 2.0 * yy) * (2 * np.pi / period)) * TEXTURE
    wave[:, : width // 8] += TEXTURE  # a brighter left margin marks the orientation
    image = np.asarray(colour, dtype=np.float64) + wave[:, :, None]
    if noise > 0:
        # photo-like grain: JPEG sizes and decode costs closer to real ImageNet files
        image = image + rng.normal(0.0, noise, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def make_image_tree(
    out: str | os.PathLike,
    *,
    classes: int = 4,
    per_class: int = 5,
    val_per_class: Optional[int] = None,
    min_side: int = 300,
    max_side: int = 500,
    seed: int = 0,
    odd_modes: bool = True,
    quality: int = 90,
    noise: float = 0.0,
) -> Path:
    """Write ``out/{train,val}/class_XX/*.JPEG`` and return ``out``.

    ``noise``: std of Gaussian pixel noise added on top of the texture (0 = smooth images).
    """
    if classes < 1 or per_class < 1:
        raise DataError(f"classes={classes} and per_class={per_class} must be >= 1")
    if not 8 <= min_side <= max_side:
        raise DataError(f"need 8 <= min_side <= max_side, got {min_side} and {max_side}")
    if odd_modes and classes < 2:
        raise DataError("odd_modes needs at least 2 classes (gray class 0, CMYK in class 1)")
    out = Path(out)
    rng = np.random.default_rng(seed)
    counts = {"train": per_class, "val": per_class if val_per_class is None else val_per_class}
    for split, count in counts.items():
        for c in range(classes):
            folder = out / split / f"class_{c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                h, w = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
                img = Image.fromarray(_image(rng, class_colour(c), h, w, noise), "RGB")
                if odd_modes and split == "train" and i == 0 and c in (0, 1):
                    img = img.convert("L" if c == 0 else "CMYK")
                img.save(folder / f"{split}_{c:02d}_{i:04d}.JPEG", "JPEG", quality=quality)
    return out
