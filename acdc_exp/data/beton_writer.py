"""Write an FFCV .beton (image + label): one split of an ImageNet-layout folder
(``write_beton``), or images already in memory (``write_arrays``, the built-in datasets); both
through the same fields, page size and atomic rename."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from acdc_exp.data.beton import IMAGE_FIELD, LABEL_FIELD, check_beton
from acdc_exp.data.beton_names import REFERENCE_SETTINGS
from acdc_exp.data.image_tree import load_rgb, scan_image_tree
from acdc_exp.errors import DataError

WRITE_MODES = ("raw", "jpg", "smart", "proportion")
_MIN_PAGE = 1 << 23  # FFCV's default page size (8 MiB)


class _TreeImages:
    """Indexable (RGB array, label) dataset for FFCV's writer processes.

    FFCV's writer waits forever for a worker that raised, so an unreadable image must not raise
    here: it is logged to ``error_log`` (appends of one short line are atomic across the forked
    workers) and replaced by a 1x1 placeholder; ``write_beton`` then discards the file.
    """

    def __init__(self, samples, error_log: Path, max_raw_bytes: int, max_resolution: Optional[int]) -> None:
        self.samples = samples
        self.error_log = str(error_log)
        self.max_raw_bytes = max_raw_bytes
        self.max_resolution = max_resolution

    def __len__(self) -> int:
        return len(self.samples)

    def _fail(self, path: str, reason: str) -> Tuple[np.ndarray, int]:
        with open(self.error_log, "a") as log:
            log.write(f"{path}: {reason}".replace("\n", " ")[:500] + "\n")
        return np.zeros((1, 1, 3), dtype=np.uint8), 0

    def __getitem__(self, index: int) -> Tuple[np.ndarray, int]:
        path, label = self.samples[index]
        try:
            image = np.asarray(load_rgb(path), dtype=np.uint8)
        except Exception as exc:  # any decoder failure; see the class docstring
            return self._fail(path, f"{type(exc).__name__}: {exc}")
        h, w = image.shape[:2]
        if self.max_resolution is not None and max(h, w) > self.max_resolution:
            scale = self.max_resolution / max(h, w)
            h, w = int(h * scale), int(w * scale)
        if h * w * 3 > self.max_raw_bytes:
            # would not fit one FFCV page: the worker would die and the writer hang
            return self._fail(path, f"{w}x{h} image too large to store; set a max resolution")
        return image, label


def _page_size(max_resolution: Optional[int]) -> int:
    """Smallest power-of-two page (>= FFCV's 8 MiB default) holding one raw image."""
    need = 3 * max_resolution * max_resolution if max_resolution else 0
    page = _MIN_PAGE
    while page < need:
        page *= 2
    return page


def write_beton(
    src_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    max_resolution: Optional[int] = int(REFERENCE_SETTINGS["max_resolution"]),
    jpeg_quality: int = int(REFERENCE_SETTINGS["jpeg_quality"]),
    compress_probability: float = float(REFERENCE_SETTINGS["compress_probability"]),
    write_mode: str = "proportion",
    num_workers: int = 1,
    chunk_size: int = 100,
    force: bool = False,
    smart_threshold: int = 3 * 224 * 224,
) -> Path:
    """Write ``src_dir/<class>/<image>`` to ``out_path`` and return the path.

    ``write_mode``: raw pixels, JPEG, ``smart`` (JPEG only for images whose raw size exceeds
    ``smart_threshold`` bytes) or ``proportion`` (JPEG with ``compress_probability``).

    The file appears atomically: FFCV writes ``.<name>.tmp-<pid>`` in the same folder, which is
    checked and then renamed, so a reader never sees a half-written .beton.
    """
    if write_mode not in WRITE_MODES:
        raise DataError(f"write_mode={write_mode!r}; allowed: {', '.join(WRITE_MODES)}")
    if max_resolution is not None and max_resolution <= 0:
        raise DataError(f"max_resolution={max_resolution} must be a positive number of pixels")
    if not 1 <= jpeg_quality <= 100:
        raise DataError(f"jpeg_quality={jpeg_quality} must be in 1..100")
    if not 0.0 <= compress_probability <= 1.0:
        raise DataError(f"compress_probability={compress_probability} must be in [0, 1]")
    if num_workers < 1 or chunk_size < 1:
        raise DataError(f"num_workers={num_workers} and chunk_size={chunk_size} must be >= 1")
    _refuse_existing(out_path, force)  # before the tree scan, which takes minutes on ImageNet
    _, samples = scan_image_tree(src_dir)
    fields = dict(
        write_mode=write_mode,
        max_resolution=max_resolution,
        jpeg_quality=jpeg_quality,
        compress_probability=compress_probability,
        smart_threshold=smart_threshold,
    )
    return _write(
        lambda log, page: _TreeImages(samples, log, page, max_resolution),
        out_path,
        fields,
        page_size=_page_size(max_resolution),
        num_workers=num_workers,
        chunk_size=chunk_size,
        force=force,
        source=str(src_dir),
    )


class _ArrayImages:
    """Indexable (RGB array, label) view of in-memory grey images (N, H, W) uint8."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Tuple[np.ndarray, int]:
        return np.repeat(self.images[index][:, :, None], 3, axis=2), int(self.labels[index])


def write_arrays(
    images: np.ndarray, labels: np.ndarray, out_path: str | os.PathLike, *, chunk_size: int = 1000, force: bool = False
) -> Path:
    """Write grey images ``(N, H, W)`` uint8 with ``labels`` as raw RGB pixels to ``out_path``
    (atomically, like ``write_beton``)."""
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) != len(labels):
        raise DataError(
            f"write_arrays needs (N, H, W) uint8 images and N labels, got {images.shape} {images.dtype}, {len(labels)}"
        )
    _refuse_existing(out_path, force)
    fields = dict(write_mode="raw", max_resolution=None)
    return _write(
        lambda log, page: _ArrayImages(images, labels),
        out_path,
        fields,
        page_size=_MIN_PAGE,
        num_workers=1,
        chunk_size=chunk_size,
        force=force,
        source="arrays",
    )


def _refuse_existing(out_path: str | os.PathLike, force: bool) -> None:
    if Path(out_path).exists() and not force:
        raise DataError(f"{out_path} already exists; pass force=True (--force) to overwrite it")


def _write(
    make_dataset, out_path, image_field: dict, *, page_size: int, num_workers: int, chunk_size: int, force: bool, source: str
) -> Path:
    """FFCV's writer into ``.<name>.tmp-<pid>`` beside ``out_path``, checked, then renamed."""
    from ffcv.fields import IntField, RGBImageField  # ffcv and numba take seconds to load
    from ffcv.writer import DatasetWriter

    out_path = Path(out_path)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {out_path.parent}: {exc}") from exc
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    errors = tmp.with_name(tmp.name + ".errors")
    dataset = make_dataset(errors, page_size)
    fields = {IMAGE_FIELD: RGBImageField(**image_field), LABEL_FIELD: IntField()}
    try:
        errors.unlink(missing_ok=True)
        writer = DatasetWriter(str(tmp), fields, page_size=page_size, num_workers=num_workers)
        writer.from_indexed_dataset(dataset, chunksize=chunk_size)
        if errors.exists():
            lines = errors.read_text().splitlines()
            raise DataError(f"{len(lines)} unreadable image(s) in {source}, first: {lines[0]}")
        check_beton(tmp)
        os.replace(tmp, out_path)
    except OSError as exc:  # full disk, read-only folder...
        raise DataError(f"cannot write {out_path}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
        errors.unlink(missing_ok=True)
    return out_path
