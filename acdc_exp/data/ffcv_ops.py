"""FFCV pipeline operations with reproducible per-sample randomness, and the pipeline guard.

FFCV compiles each operation once, freezing every array or number it closes over, so a per-epoch
seed cannot simply be captured. ``KeyCell`` holds the epoch key in a NumPy array and the compiled
code reads it through the array's address at run time: setting the key before an epoch changes
the augmentations without recompiling (recompiling costs ~1 s per epoch and makes numba print
spurious finalizer errors).
"""

from __future__ import annotations

from typing import Callable, Sequence, Tuple

import numba
import numpy as np
import torch
from ffcv.fields.rgb_image import IMAGE_MODES, ResizedCropRGBImageDecoder
from ffcv.libffcv import imdecode, resize_crop
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State
from ffcv.transforms import ModuleWrapper, Squeeze, ToDevice, ToTensor, ToTorchImage
from ffcv.transforms.ops import Convert, View
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from acdc_exp.data.augment import CROP_DRAWS, SALT_CROP, SALT_FLIP, SALT_TRANSLATE, crop_from_uniforms, sample_seed
from acdc_exp.errors import DataError


@intrinsic
def _as_voidptr(typingctx, address):
    """Turn an integer address into a ``void*`` so ``numba.carray`` can view live memory."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


@numba.njit
def _read_key(address):
    return numba.carray(_as_voidptr(address), 1, np.int64)[0]


_crop_from_uniforms = numba.njit(crop_from_uniforms)
_sample_seed = numba.njit(sample_seed)


class KeyCell:
    """A 64-bit value that compiled FFCV code reads at run time (the epoch key)."""

    def __init__(self) -> None:
        self._value = np.zeros(1, dtype=np.int64)

    @property
    def address(self) -> int:
        return int(self._value.ctypes.data)

    def set(self, value: int) -> None:
        self._value[0] = value


class SeededRandomResizedCropDecoder(ResizedCropRGBImageDecoder):
    """RandomResizedCrop decoder whose crop box depends only on (epoch key, sample index).

    Set ``output_size`` before an epoch to change the resolution (progressive resizing):
    FFCV re-declares the buffers at the start of every epoch.
    """

    def __init__(
        self,
        output_size: Tuple[int, int],
        key: KeyCell,
        scale: Tuple[float, float] = (0.08, 1.0),
        ratio: Tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        super().__init__(output_size)
        self.key = key
        self.scale = scale
        self.ratio = ratio

    @property
    def get_crop_generator(self) -> None:  # required by the abstract base; generate_code replaces it
        return None

    def generate_code(self) -> Callable:
        jpg = IMAGE_MODES["jpg"]
        mem_read = self.memory_read
        my_range = Compiler.get_iterator()
        imdecode_c = Compiler.compile(imdecode)
        resize_crop_c = Compiler.compile(resize_crop)
        key_address = self.key.address
        scale_min, scale_max = float(self.scale[0]), float(self.scale[1])
        log_r0, log_r1 = float(np.log(self.ratio[0])), float(np.log(self.ratio[1]))
        draws = CROP_DRAWS
        salt = SALT_CROP

        def decode(batch_indices, my_storage, metadata, storage_state):
            destination, temp_storage = my_storage
            key = _read_key(key_address)
            for dst_ix in my_range(len(batch_indices)):
                source_ix = batch_indices[dst_ix]
                field = metadata[source_ix]
                image_data = mem_read(field["data_ptr"], storage_state)
                height = np.uint32(field["height"])
                width = np.uint32(field["width"])
                if field["mode"] == jpg:
                    temp_buffer = temp_storage[dst_ix]
                    imdecode_c(image_data, temp_buffer, height, width, height, width, 0, 0, 1, 1, False, False)
                    temp_buffer = temp_buffer.reshape(-1)[: 3 * height * width]
                    temp_buffer = temp_buffer.reshape(height, width, 3)
                else:
                    temp_buffer = image_data.reshape(height, width, 3)
                # Seeding numba's per-thread generator per sample makes the draw independent
                # of which thread decodes the sample.
                np.random.seed(np.uint32(_sample_seed(key, np.int64(source_ix), salt)))
                u = np.random.random(draws)
                top, left, h, w = _crop_from_uniforms(np.int64(height), np.int64(width), u, scale_min, scale_max, log_r0, log_r1)
                resize_crop_c(temp_buffer, top, top + h, left, left + w, destination[dst_ix])
            return destination[: len(batch_indices)]

        decode.is_parallel = True
        return decode


class _SeededImageOp(Operation):
    """A same-shape image operation whose per-sample draws depend only on (epoch key, sample
    index, the operation's salt)."""

    def __init__(self, key: KeyCell) -> None:
        super().__init__()
        self.key = key

    def declare_state_and_memory(self, previous_state: State) -> Tuple[State, AllocationQuery]:
        return previous_state, AllocationQuery(previous_state.shape, previous_state.dtype)

    @staticmethod
    def _seeded(fn: Callable) -> Callable:
        fn.is_parallel = True
        fn.with_indices = True  # FFCV then passes the batch's sample indices
        return fn


class SeededRandomHorizontalFlip(_SeededImageOp):
    """Horizontal flip with probability 1/2, decided by (epoch key, sample index)."""

    def generate_code(self) -> Callable:
        my_range = Compiler.get_iterator()
        key_address = self.key.address
        salt = SALT_FLIP

        def flip(images, dst, batch_indices):
            key = _read_key(key_address)
            for i in my_range(images.shape[0]):
                np.random.seed(np.uint32(_sample_seed(key, np.int64(batch_indices[i]), salt)))
                if np.random.random() < 0.5:
                    dst[i] = images[i, :, ::-1]
                else:
                    dst[i] = images[i]
            return dst[: images.shape[0]]

        return self._seeded(flip)


class SeededRandomTranslate(_SeededImageOp):
    """Random crop with zero padding (torchvision's ``RandomCrop(size, padding)``): the image is
    shifted by up to ``padding`` pixels each way, the uncovered border zero; the shift depends
    only on (epoch key, sample index)."""

    def __init__(self, key: KeyCell, padding: int) -> None:
        super().__init__(key)
        self.padding = int(padding)

    def generate_code(self) -> Callable:
        my_range = Compiler.get_iterator()
        key_address = self.key.address
        salt = SALT_TRANSLATE
        pad = self.padding

        def translate(images, dst, batch_indices):
            key = _read_key(key_address)
            h, w = images.shape[1], images.shape[2]
            for i in my_range(images.shape[0]):
                np.random.seed(np.uint32(_sample_seed(key, np.int64(batch_indices[i]), salt)))
                dy = np.random.randint(-pad, pad + 1)
                dx = np.random.randint(-pad, pad + 1)
                dst[i] = 0
                # output pixel (y, x) reads input (y + dy, x + dx) where that lies inside
                y0, y1 = max(0, -dy), min(h, h - dy)
                x0, x1 = max(0, -dx), min(w, w - dx)
                if y0 < y1 and x0 < x1:
                    dst[i, y0:y1, x0:x1] = images[i, y0 + dy : y1 + dy, x0 + dx : x1 + dx]
            return dst[: images.shape[0]]

        return self._seeded(translate)


# Operations FFCV runs as plain Python on torch tensors. Anything else is compiled by numba.
_TORCH_OPS = (ToTensor, ToDevice, ToTorchImage, Squeeze, Convert, View, ModuleWrapper, torch.nn.Module)


def assert_pipeline_safe(pipeline_ops: Sequence[object]) -> None:
    """Refuse a pipeline with a compiled operation after a torch one.

    FFCV 1.0.2's ``Graph.group_operations`` loops forever on CPU when stages go
    compiled -> torch -> compiled (e.g. ``NormalizeImage`` after ``ToTensor``), so such a
    pipeline must never reach the Loader. Normalization happens in ``DataModule.prepare``.
    """
    first_torch = None
    for op in pipeline_ops:
        is_torch = isinstance(op, _TORCH_OPS)
        if is_torch and first_torch is None:
            first_torch = op
        elif not is_torch and first_torch is not None:
            raise DataError(
                f"FFCV pipeline puts compiled op {type(op).__name__} after torch op "
                f"{type(first_torch).__name__}; FFCV 1.0.2 hangs on that order, so keep all "
                f"compiled ops before ToTensor"
            )
