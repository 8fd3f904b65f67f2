"""ImageNet-layout folders (``<split>/<class>/<image>``): scanning and RGB decoding.

Class indices follow torchvision's ImageFolder (sorted class folder names), so a model trained
on the .beton written from a tree and one trained on the tree itself agree on labels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Tuple

from PIL import Image

from acdc_exp.errors import DataError

# torchvision's IMG_EXTENSIONS, compared case-insensitively as ImageFolder does
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def scan_image_tree(root: str | os.PathLike) -> Tuple[List[str], List[Tuple[str, int]]]:
    """Return ``(class names, [(file, class index)])``; DataError for a missing or empty tree."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise DataError(f"no class folders in {root} (expected {root}/<class>/<image>)")
    samples: List[Tuple[str, int]] = []
    for index, name in enumerate(classes):
        found = []
        for dirpath, _, files in sorted(os.walk(root / name, followlinks=True)):
            found.extend(os.path.join(dirpath, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not found:
            raise DataError(f"class folder {root / name} has no images (extensions {', '.join(IMAGE_EXTENSIONS)})")
        samples.extend((f, index) for f in found)
    return classes, samples


def load_rgb(path: str) -> Image.Image:
    """Open an image as 8-bit RGB (grayscale, palette, CMYK and alpha images are converted)."""
    with Image.open(path) as img:
        return img.convert("RGB")
