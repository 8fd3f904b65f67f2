"""How .beton files are named: ``<split>_<max side>_<JPEG share>_<JPEG quality>.beton``.

FFCV's ResNet-50 betons are named this way (``train_500_0.50_90.beton``). ``acdc-data write``
names its outputs by this rule and the ImageNet FFCV config finds them by it (the
``beton_path`` resolver, config/schema.py), so a written file is never renamed. No torch or
FFCV here: the config resolver imports this module while composing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Optional, Union

from acdc_exp.errors import DataError

# FFCV's ResNet-50 betons, which configs/data/imagenet_ffcv.yaml expects and the reference job
# reads: max side 500, half the images JPEG at quality 90; the writer CLI's defaults
REFERENCE_SETTINGS: Dict[str, Union[int, float]] = {"max_resolution": 500, "compress_probability": 0.5, "jpeg_quality": 90}
# the CLI's option for each setting
_FLAGS = {
    "max_resolution": "--max-resolution",
    "compress_probability": "--compress-probability",
    "jpeg_quality": "--jpeg-quality",
}
_NAME = re.compile(
    r"^(?P<split>[A-Za-z]+)_(?P<max_resolution>\d+)_(?P<compress_probability>\d\.\d\d)_(?P<jpeg_quality>\d+)\.beton$"
)


def beton_file_name(split: str, max_resolution: int, compress_probability: float, jpeg_quality: int) -> str:
    """``beton_file_name("train", 500, 0.5, 90) == "train_500_0.50_90.beton"``."""
    values = {"max_resolution": max_resolution, "compress_probability": compress_probability, "jpeg_quality": jpeg_quality}
    unset = [k for k, v in values.items() if v is None]
    if unset:
        raise DataError(
            f"the {split} .beton name needs {', '.join(unset)} (null given); allowed: the numbers it was written "
            f"with (acdc-data write {' '.join(_FLAGS[k] for k in unset)}), or an explicit data.{split}_path"
        )
    return f"{split}_{int(max_resolution)}_{float(compress_probability):.2f}_{int(jpeg_quality)}.beton"


def beton_path(beton_dir: Optional[str], split: str, max_resolution: int, compress_probability: float, jpeg_quality: int) -> str:
    """``beton_dir/<beton_file_name(...)>``: the ImageNet FFCV config's train/val paths."""
    if beton_dir is None or str(beton_dir).strip() == "":
        raise DataError(f"data.beton_dir is not set; allowed: the folder acdc-data write --out wrote, or data.{split}_path=FILE")
    return str(
        Path(os.path.expanduser(str(beton_dir))) / beton_file_name(split, max_resolution, compress_probability, jpeg_quality)
    )


def jpeg_share(write_mode: str, compress_probability: float) -> float:
    """The share of images stored as JPEG, the name's third field: ``raw`` stores none and
    ``jpg`` all, ``proportion`` draws each with ``compress_probability``."""
    return {"raw": 0.0, "jpg": 1.0}.get(write_mode, compress_probability)


def config_overrides(beton_dir: Path, settings: Dict[str, Union[int, float]]) -> str:
    """The acdc-train overrides that make the ImageNet FFCV config name files written to
    ``beton_dir`` with ``settings``: the folder, and each setting not the reference one."""
    extra = [f"data.{k}={v}" for k, v in settings.items() if float(v) != float(REFERENCE_SETTINGS[k])]
    return " ".join([f"data.beton_dir={beton_dir}", *extra])


def write_hint(path: Union[str, os.PathLike]) -> str:
    """How to write the missing .beton ``path``: the acdc-data command its name implies."""
    path = Path(path)
    match = _NAME.match(path.name)
    if match is None:
        return "write .beton files with acdc-data write --src <folder with train/ and val/> --out DIR"
    flags = [f"{_FLAGS[k]} {match[k]}" for k, ref in REFERENCE_SETTINGS.items() if float(match[k]) != float(ref)]
    command = " ".join(["acdc-data write --src <folder with train/ and val/>", f"--out {path.parent}", *flags])
    return (
        f"write it with {command}, or point data.beton_dir at the folder that holds it "
        "(files named otherwise, e.g. an older train.beton/val.beton: data.train_path=FILE data.val_path=FILE)"
    )
