"""FFCV train/val loaders producing uint8 NCHW images and int64 labels.

Pipelines end in torch ops only after every compiled op (see ``assert_pipeline_safe``);
normalization is left to ``DataModule.prepare`` on the device.
"""

from __future__ import annotations

import contextlib
import queue
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import numba
import torch
from omegaconf import DictConfig

from acdc_exp.data.augment import epoch_key
from acdc_exp.data.beton import IMAGE_FIELD, LABEL_FIELD, check_beton
from acdc_exp.data.ffcv_ops import (
    KeyCell,
    SeededRandomHorizontalFlip,
    SeededRandomResizedCropDecoder,
    SeededRandomTranslate,
    assert_pipeline_safe,
)
from acdc_exp.data.sharding import val_shard
from acdc_exp.errors import DataError

# a stopped producer thread ends within one batch's decoding; this bounds the wait
STOP_TIMEOUT_S = 120.0

Batch = Tuple[torch.Tensor, torch.Tensor]


@contextlib.contextmanager
def _keep_torch_threads():
    """FFCV sets torch's intra-op thread count to its worker count; the trainer owns it."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class FfcvSource:
    """The two FFCV loaders of a run; one train epoch may be iterated at a time."""

    def __init__(
        self,
        cfg: DictConfig,
        train_path: Path,
        val_path: Path,
        *,
        device: torch.device,
        seed: int,
        distributed: bool,
        num_classes: int,
    ) -> None:
        from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder  # ffcv and numba take seconds to load
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import ToDevice, ToTensor, ToTorchImage  # ffcv and numba take seconds to load

        samples = {}
        for split, path in (("train", train_path), ("val", val_path)):
            info = check_beton(path)
            samples[split] = info.num_samples
            if info.num_samples == 0:
                raise DataError(f"{split} beton {path} holds no samples")
            if info.max_label >= num_classes:
                raise DataError(f"{split} beton {path} has label {info.max_label} but data.num_classes={num_classes}")
        if distributed and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise DataError("distributed FFCV loading needs torch.distributed initialized before build_data")
        self.device = device
        self.seed = seed % (1 << 31)
        self.key = KeyCell()
        # numba refuses more threads than NUMBA_NUM_THREADS (the core count by default)
        workers = max(1, min(cfg.num_workers, numba.config.NUMBA_NUM_THREADS))
        on_cuda = device.type == "cuda"

        res = int(cfg.res)
        if cfg.random_resized_crop:
            self.decoder = SeededRandomResizedCropDecoder((res, res), self.key, scale=(cfg.crop_scale_min, 1.0))
        else:
            self.decoder = CenterCropRGBImageDecoder((res, res), ratio=1.0)
        train_image: List = [self.decoder]
        if cfg.crop_padding:
            train_image.append(SeededRandomTranslate(self.key, cfg.crop_padding))
        if cfg.random_flip:
            train_image.append(SeededRandomHorizontalFlip(self.key))
        val_image: List = [CenterCropRGBImageDecoder((cfg.val_res, cfg.val_res), ratio=cfg.center_crop_ratio)]

        def tail() -> List:
            return [ToTensor()] + ([ToDevice(device, non_blocking=True)] if on_cuda else [])

        # channels_last=True is a free permuted view; on CPU DataModule makes it contiguous
        train_image += tail() + [ToTorchImage(channels_last=True)]
        val_image += tail() + [ToTorchImage(channels_last=True)]

        def labels() -> List:
            # no Squeeze: it would turn a 1-sample batch into a 0-d tensor
            return [IntDecoder()] + tail()

        pipes = []
        for image_ops in (train_image, val_image):
            label_ops = labels()
            assert_pipeline_safe(image_ops)
            assert_pipeline_safe(label_ops)
            pipes.append({IMAGE_FIELD: image_ops, LABEL_FIELD: label_ops})
        order = {"random": OrderOption.RANDOM, "quasi_random": OrderOption.QUASI_RANDOM, "sequential": OrderOption.SEQUENTIAL}[
            cfg.order
        ]
        common = dict(
            num_workers=workers, os_cache=cfg.os_cache, distributed=distributed, seed=self.seed, batches_ahead=cfg.batches_ahead
        )
        try:
            with _keep_torch_threads():
                self.train_loader = Loader(
                    str(train_path), batch_size=cfg.batch_size, order=order, pipelines=pipes[0], drop_last=cfg.drop_last, **common
                )
                # FFCV's distributed order pads the last shard: validation takes an exact
                # strided shard instead (data/sharding.py)
                val_common = dict(common, distributed=False)
                if distributed:
                    val_common["indices"] = val_shard(
                        samples["val"], torch.distributed.get_rank(), torch.distributed.get_world_size()
                    )
                self.val_loader = Loader(
                    str(val_path),
                    batch_size=cfg.val_batch_size,
                    order=OrderOption.SEQUENTIAL,
                    pipelines=pipes[1],
                    drop_last=False,
                    **val_common,
                )
        except (ValueError, NotImplementedError) as exc:  # e.g. quasi-random + distributed
            raise DataError(f"FFCV loader for {train_path}: {exc}") from exc

    def train_len(self) -> int:
        return len(self.train_loader)

    def _iterate(self, loader, epoch: int | None = None, res: int = 0) -> Iterator[Batch]:
        if epoch is not None:
            # Both take effect when FFCV starts the epoch: it re-declares its buffers (new
            # size) and the compiled decoder reads the key cell for every batch.
            self.key.set(epoch_key(self.seed, epoch))
            self.decoder.output_size = (res, res)
            # FFCV seeds the order with seed + its own epoch counter; pin the counter to our
            # epoch so that a resumed run sees the same order.
            loader.next_epoch = epoch
        with _keep_torch_threads():
            iterator = iter(loader)
        try:
            for images, labels in iterator:
                yield images, labels.reshape(-1)
        finally:
            _stop(iterator)

    def train_epoch(self, epoch: int, res: int) -> Iterator[Batch]:
        return self._iterate(self.train_loader, epoch, res)

    def val_epoch(self) -> Iterator[Batch]:
        return self._iterate(self.val_loader)


def _stop(iterator) -> None:
    """Stop FFCV's producer thread and wait for it, then release the epoch's memory.

    FFCV's ``close()`` only raises a flag, which its thread reads when the output queue stays
    full; a thread that reached the end of its batches waits forever to queue the end marker.
    Such a thread outlives its epoch, and one still running native code when the interpreter
    exits can abort the process. (FFCV 1.0.2's EpochIterator: ``iter_ixes``, ``output_queue``.)
    """
    iterator.terminate_event.set()
    iterator.iter_ixes = iter(())  # nothing after the batch it is decoding now
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while iterator.is_alive() and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            while True:  # make room for its last batch and the end marker
                iterator.output_queue.get_nowait()
        iterator.join(timeout=0.05)
    iterator.close()
