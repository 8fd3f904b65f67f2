"""The embedded default dataset: scikit-learn's 8x8 digits as 32x32 RGB images.

``ensure_digits`` writes an ImageFolder tree of PNGs (stratified 80/20 split, fixed seed) and
turns it into train/val .beton files with the same writer as ImageNet. It runs once per cache
folder; concurrent callers (two SLURM jobs starting together) serialise on a file lock and every
file appears by atomic rename, so no caller sees a half-written dataset.
"""

from __future__ import annotations

import fcntl
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image

from acdc_exp.errors import DataError

SIDE = 32
UPSCALE = SIDE // 8
NUM_CLASSES = 10
TOTAL = 1797
VAL_FRACTION = 0.2
SPLIT_SEED = 0
# scikit-learn's split: ceil(VAL_FRACTION * TOTAL) val images, the rest (1437) train
TRAIN_IMAGES = TOTAL - math.ceil(VAL_FRACTION * TOTAL)


@dataclass(frozen=True)
class DigitsFiles:
    root: Path
    train_dir: Path
    val_dir: Path
    train_beton: Path
    val_beton: Path


def digits_files(cache_dir: str | os.PathLike) -> DigitsFiles:
    root = Path(cache_dir)
    return DigitsFiles(root, root / "tree" / "train", root / "tree" / "val", root / "train.beton", root / "val.beton")


def digits_arrays() -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(train images, train labels, val images, val labels)``; images uint8 (N, 32, 32)."""
    from sklearn.datasets import load_digits  # scikit-learn: only to build the digits cache
    from sklearn.model_selection import train_test_split

    data = load_digits()
    # 0..16 intensities to 0..255, then nearest-neighbour upscaling keeps the strokes crisp
    images = np.rint(data.images * (255.0 / 16.0)).astype(np.uint8)
    images = images.repeat(UPSCALE, axis=1).repeat(UPSCALE, axis=2)
    labels = data.target.astype(np.int64)
    train_idx, val_idx = train_test_split(
        np.arange(len(labels)), test_size=VAL_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    return images[train_idx], labels[train_idx], images[val_idx], labels[val_idx]


def digits_mean_std() -> Tuple[float, float]:
    """Pixel mean and std (0-255 scale) of the train split; the same for R, G and B."""
    train, _, _, _ = digits_arrays()
    return float(train.mean()), float(train.std())


def _write_tree(dest: Path) -> None:
    x_train, y_train, x_val, y_val = digits_arrays()
    for split, images, labels in (("train", x_train, y_train), ("val", x_val, y_val)):
        for c in range(NUM_CLASSES):
            (dest / split / str(c)).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(images, labels)):
            rgb = np.repeat(image[:, :, None], 3, axis=2)
            Image.fromarray(rgb, "RGB").save(dest / split / str(label) / f"{i:05d}.png")


def _complete(files: DigitsFiles) -> bool:
    from acdc_exp.data.beton import check_beton  # ffcv and numba take seconds to load

    if not (files.train_beton.is_file() and files.val_beton.is_file()):
        return False
    try:
        n = check_beton(files.train_beton).num_samples + check_beton(files.val_beton).num_samples
    except DataError:
        return False
    return n == TOTAL


def ensure_digits(cache_dir: str | os.PathLike) -> DigitsFiles:
    """Build the digits tree and betons under ``cache_dir`` unless they are already there."""
    from acdc_exp.data.beton_writer import write_beton  # ffcv and numba take seconds to load

    files = digits_files(cache_dir)
    if _complete(files):
        return files
    files.root.mkdir(parents=True, exist_ok=True)
    with open(files.root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if _complete(files):  # another process finished while we waited
            return files
        tree = files.root / "tree"
        if not tree.is_dir():
            tmp = files.root / f".tree.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            _write_tree(tmp)
            os.replace(tmp, tree)
        for src, out in ((files.train_dir, files.train_beton), (files.val_dir, files.val_beton)):
            write_beton(src, out, write_mode="raw", max_resolution=None, num_workers=1, chunk_size=200, force=True)
    return files
