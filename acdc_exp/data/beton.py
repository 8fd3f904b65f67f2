"""Structural check of a .beton file before FFCV opens it.

FFCV's Reader trusts the file: a truncated or foreign file gives an IndexError, a numba crash
or silently wrong pixels. The layout (FFCV 1.0.2, format version 2) is: header, field
descriptors, per-sample metadata, data pages, and last the allocation table whose offset the
header stores. Checking that every part fits in the file catches truncation at any point.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List

import numpy as np
from ffcv.fields import IntField, RGBImageField
from ffcv.types import (
    ALLOC_TABLE_TYPE,
    CURRENT_VERSION,
    TYPE_ID_HANDLER,
    FieldDescType,
    HeaderType,
    get_handlers,
    get_metadata_type,
)
from ffcv.utils import decode_null_terminated_string

from acdc_exp.data.beton_names import write_hint
from acdc_exp.errors import DataError

IMAGE_FIELD = "image"
LABEL_FIELD = "label"


@dataclass(frozen=True)
class BetonInfo:
    path: Path
    num_samples: int
    field_names: List[str]
    max_label: int
    max_side: int  # longest image side stored


def check_beton(path: str | os.PathLike) -> BetonInfo:
    """Validate ``path`` as an image/label .beton; raise a one-line DataError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"beton file not found: {path}; {write_hint(path)}")
    size = path.stat().st_size

    def bad(reason: str) -> DataError:
        return DataError(f"corrupt or truncated .beton {path}: {reason}")

    if size < HeaderType.itemsize:
        raise bad(f"{size} bytes is shorter than the {HeaderType.itemsize}-byte header")
    header = np.fromfile(path, dtype=HeaderType, count=1)[0]
    if int(header["version"]) != CURRENT_VERSION:
        raise bad(f"format version {int(header['version'])}, expected {CURRENT_VERSION}")
    num_fields = int(header["num_fields"])
    num_samples = int(header["num_samples"])
    if num_fields < 1 or num_fields > 64:
        raise bad(f"implausible field count {num_fields}")
    desc_end = HeaderType.itemsize + num_fields * FieldDescType.itemsize
    if desc_end > size:
        raise bad("field descriptors cut off")
    descs = np.fromfile(path, dtype=FieldDescType, count=num_fields, offset=HeaderType.itemsize)
    names = [decode_null_terminated_string(d["name"]) for d in descs]
    types = [TYPE_ID_HANDLER.get(int(d["type_id"])) for d in descs]
    if any(t is None for t in types):
        raise bad(f"unknown field type in {names}")
    expected = {IMAGE_FIELD: RGBImageField, LABEL_FIELD: IntField}
    for name, cls in expected.items():
        if name not in names or types[names.index(name)] is not cls:
            raise DataError(
                f"{path} is not an image/label beton: fields are {names}, expected "
                f"'{IMAGE_FIELD}' (RGBImageField) and '{LABEL_FIELD}' (IntField)"
            )
    meta_type = get_metadata_type(get_handlers(descs))
    meta_end = desc_end + num_samples * meta_type.itemsize
    alloc_ptr = int(header["alloc_table_ptr"])
    if meta_end > size or alloc_ptr < meta_end or alloc_ptr > size:
        raise bad(f"allocation table at byte {alloc_ptr} outside the {size}-byte file")
    if (size - alloc_ptr) % ALLOC_TABLE_TYPE.itemsize:
        raise bad("allocation table cut off")
    table = np.fromfile(path, dtype=ALLOC_TABLE_TYPE, offset=alloc_ptr)
    if len(table) and int((table["ptr"] + table["size"]).max()) > alloc_ptr:
        raise bad("data pages overlap the allocation table")
    meta = np.fromfile(path, dtype=meta_type, count=num_samples, offset=desc_end)
    image_meta = meta[f"f{names.index(IMAGE_FIELD)}"]
    # every stored image owns exactly one allocation; fewer means lost data pages
    if len(np.unique(table["sample_id"])) != num_samples:
        raise bad(f"{len(np.unique(table['sample_id']))} of {num_samples} images have data")
    labels = meta[f"f{names.index(LABEL_FIELD)}"]
    if num_samples and int(labels.min()) < 0:
        raise bad(f"negative label {int(labels.min())}")
    max_side = int(max(image_meta["width"].max(), image_meta["height"].max())) if num_samples else 0
    return BetonInfo(
        path=path,
        num_samples=num_samples,
        field_names=names,
        max_label=int(labels.max()) if num_samples else -1,
        max_side=max_side,
    )
