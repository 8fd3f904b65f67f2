"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (Zalando's four IDX files).

``ensure_fashion_mnist`` reads the gzip IDX files, checks them (magic number, dimensions,
size), splits the 60,000 training images into train (the first 55,000) and a fixed validation
holdout (the last 5,000; ``holdout``), and writes train/val/test .beton files with the writer
ImageNet uses. A folder holding a subset in the same format works alike (tests use one).
It runs once per cache folder; concurrent callers serialise on a file lock and each file
appears by atomic rename, so a killed conversion leaves nothing a later run would read.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from acdc_exp.errors import DataError

PACKAGE = "dataset-fashion-mnist"
DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
SIDE = 28
NUM_CLASSES = 10
TRAIN_TOTAL = 60_000
HOLDOUT = 5_000  # the last 5,000 training images: the validation split every tuning choice uses
SPLITS = ("train", "val", "test")
_HEADER = {3: 16, 1: 8}
MANIFEST = "manifest.json"  # bytes before the pixels / labels
# IDX magic numbers: 0x0000 08 03 (unsigned bytes, 3 dims) and 0x0000 08 01 (1 dim)
_MAGIC = {3: 2051, 1: 2049}


@dataclass(frozen=True)
class FashionFiles:
    root: Path
    betons: Dict[str, Path]  # split -> .beton


def fashion_files(cache_dir: str | os.PathLike) -> FashionFiles:
    root = Path(cache_dir)
    return FashionFiles(root, {split: root / f"{split}.beton" for split in SPLITS})


def read_idx(path: Path, dims: int) -> np.ndarray:
    """One gzip IDX file as a uint8 array of ``dims`` dimensions; a DataError naming the file
    when it is unreadable, truncated or not an IDX file of that shape."""
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise DataError(f"{path} not found") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable gzip IDX file ({type(exc).__name__}: {exc})") from None
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{path} is truncated: {len(raw)} bytes, shorter than an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != _MAGIC[dims]:
        raise DataError(f"{path} has magic number {magic}, not {_MAGIC[dims]} (IDX uint8, {dims} dimension(s))")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    need = header + int(np.prod(shape))
    if len(raw) != need:
        raise DataError(f"{path} holds {len(raw)} bytes, its header {shape} needs {need}: truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def source_missing(source_dir: str | os.PathLike) -> str:
    """The one line for a source folder without the IDX files."""
    return (
        f"Fashion-MNIST not found in {source_dir}: install the Debian package ({'apt-get install ' + PACKAGE}; "
        f"scripts/setup.sh does it as root) or point data.source_dir at the folder holding {IDX_FILES['train_images']} "
        f"and the other three IDX files"
    )


def _paths(source_dir: str | os.PathLike) -> Dict[str, Path]:
    src = Path(os.path.expanduser(str(source_dir)))
    paths = {key: src / name for key, name in IDX_FILES.items()}
    if not all(p.is_file() for p in paths.values()):
        raise DataError(source_missing(src))
    return paths


def fashion_arrays(source_dir: str | os.PathLike, holdout: int = HOLDOUT) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """split -> (images (N, 28, 28) uint8, labels (N,) int64), checked; val is the last
    ``holdout`` training images."""
    paths = _paths(source_dir)
    arrays = {key: read_idx(path, 3 if key.endswith("images") else 1) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape[1:] != (SIDE, SIDE) or images.shape[0] != labels.shape[0]:
            raise DataError(
                f"{paths[split + '_images']}: {images.shape} images for {labels.shape[0]} labels; "
                f"Fashion-MNIST has one {SIDE}x{SIDE} image per label"
            )
        if labels.size and labels.max() >= NUM_CLASSES:
            raise DataError(f"{paths[split + '_labels']}: label {labels.max()} outside 0..{NUM_CLASSES - 1}")
    train_x, train_y = arrays["train_images"], arrays["train_labels"].astype(np.int64)
    keep = len(train_y) - holdout
    if holdout < 1 or keep < 1:
        raise DataError(
            f"data.holdout={holdout}: need 1 <= holdout < {len(train_y)} (the training images in {paths['train_images']})"
        )
    return {
        "train": (train_x[:keep], train_y[:keep]),
        "val": (train_x[keep:], train_y[keep:]),
        "test": (arrays["test_images"], arrays["test_labels"].astype(np.int64)),
    }


def _split_sizes(source_dir: str | os.PathLike, holdout: int) -> Dict[str, int]:
    """Images per split from the IDX headers alone (the gzip stream's first bytes)."""
    paths = _paths(source_dir)
    counts = {}
    for split in ("train", "test"):
        try:
            with gzip.open(paths[f"{split}_images"], "rb") as fh:
                counts[split] = int.from_bytes(fh.read(_HEADER[3])[4:8], "big")
        except (OSError, EOFError, zlib.error):
            counts[split] = -1  # unreadable: the full read names the problem
    return {"train": counts["train"] - holdout, "val": holdout, "test": counts["test"]}


def train_mean_std(source_dir: str | os.PathLike = DEFAULT_DIR) -> Tuple[float, float]:
    """Pixel mean and std (0-255 scale) of the train split (holdout excluded): data.mean/std."""
    images, _ = fashion_arrays(source_dir)["train"]
    return float(images.mean()), float(images.std())


def train_split_size(source_dir: str | os.PathLike, holdout: int) -> int:
    """Training images less the holdout, read from the IDX header (the package's 55,000 when
    the files are not there yet)."""
    try:
        return _split_sizes(source_dir, holdout)["train"]
    except DataError:
        return TRAIN_TOTAL - holdout


def _manifest(source_dir: str | os.PathLike, holdout: int) -> Dict[str, object]:
    """What the cached files were written from: each IDX file's path, size and mtime, and the
    holdout; another source with the same counts or another holdout rebuilds the cache."""
    paths = _paths(source_dir)
    files = {key: [str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for key, p in paths.items()}
    return {"files": files, "holdout": holdout}


def _complete(files: FashionFiles, sizes: Dict[str, int], manifest: Dict[str, object]) -> bool:
    from acdc_exp.data.beton import check_beton  # ffcv and numba take seconds to load

    try:
        if json.loads((files.root / MANIFEST).read_text()) != manifest:
            return False
        return all(p.is_file() and check_beton(p).num_samples == sizes[s] for s, p in files.betons.items())
    except (OSError, ValueError, DataError):
        return False


def ensure_fashion_mnist(source_dir: str | os.PathLike, cache_dir: str | os.PathLike, holdout: int = HOLDOUT) -> FashionFiles:
    """The train/val/test .beton files under ``cache_dir``, written from ``source_dir`` unless
    files with the source's split sizes are already there."""
    from acdc_exp.data.beton_writer import write_arrays  # ffcv and numba take seconds to load

    files = fashion_files(cache_dir)
    sizes = _split_sizes(source_dir, holdout)
    manifest = _manifest(source_dir, holdout)
    if _complete(files, sizes, manifest):
        return files
    arrays = fashion_arrays(source_dir, holdout)  # checked before anything is written
    files.root.mkdir(parents=True, exist_ok=True)
    with open(files.root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if _complete(files, sizes, manifest):  # another process finished while we waited
            return files
        (files.root / MANIFEST).unlink(missing_ok=True)
        for split, path in files.betons.items():
            write_arrays(*arrays[split], path, force=True)
        # last, and atomically: the files are complete once the manifest says what they hold
        tmp = files.root / f".{MANIFEST}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(manifest))
        os.replace(tmp, files.root / MANIFEST)
    return files
