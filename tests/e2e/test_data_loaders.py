"""Both loaders on a generated ImageNet-layout tree: content, determinism, normalization."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch
from data_helpers import (
    CLASSES,
    TRAIN_PER_CLASS,
    VAL_PER_CLASS,
    collect,
    data_config,
    make_synthetic_dataset,
    nearest_class,
    tree_labels,
)

from acdc_exp.data import DataModule, build_data
from acdc_exp.data.settings import resolution_for_epoch, resolve_num_workers, usable_cpus
from acdc_exp.data.sharding import val_shard
from acdc_exp.errors import DataError

torch.set_num_threads(1)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def modules(synth, tmp_path_factory) -> dict:
    cache = str(tmp_path_factory.mktemp("cache"))
    return {loader: build_data(data_config(loader, synth), data_cache=cache, device=CPU, seed=7) for loader in ("ffcv", "folder")}


@pytest.fixture(params=["ffcv", "folder"])
def dm(request, modules) -> DataModule:
    return modules[request.param]


def test_train_batches_shapes_dtypes_and_labels(dm):
    assert dm.num_classes == CLASSES
    assert dm.steps_per_epoch() == CLASSES * TRAIN_PER_CLASS // 4
    batches = list(dm.train_batches(0))
    assert len(batches) == dm.steps_per_epoch()
    for images, labels in batches:
        assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
        assert images.is_contiguous()
        assert labels.shape == (4,) and labels.dtype == torch.int64
    images, labels = collect(batches)
    # every sample once (drop_last drops nothing: 24 = 6 x 4), each class TRAIN_PER_CLASS times
    assert torch.bincount(labels, minlength=CLASSES).tolist() == [TRAIN_PER_CLASS] * CLASSES
    # the crop's mean colour names the class the label says (gray, red, green, blue)
    assert torch.equal(nearest_class(images), labels)


def test_val_batches_sequential_center_crop(dm, synth):
    batches = list(dm.val_batches())
    assert [len(y) for _, y in batches] == [5, 5, 2]  # no drop_last for val
    images, labels = collect(batches)
    assert labels.tolist() == tree_labels(synth["tree"] / "val").tolist()
    assert torch.equal(nearest_class(images), labels)
    again_images, again_labels = collect(dm.val_batches())
    assert torch.equal(images, again_images) and torch.equal(labels, again_labels)


def test_same_epoch_replays_identically_and_epochs_differ(dm):
    first = collect(dm.train_batches(3))
    second = collect(dm.train_batches(3))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    other = collect(dm.train_batches(4))
    # another order of the same samples: the labels are a permutation, moved in most places
    assert torch.equal(first[1].sort().values, other[1].sort().values)
    assert int((first[1] != other[1]).sum()) >= len(first[1]) // 3
    # the same 24 samples with other crops and flips: the overall pixel mean moves
    assert not torch.equal(first[0].float().mean(), other[0].float().mean())


def test_ffcv_and_folder_agree(modules):
    """Same order, crop boxes and flips for the same seed/epoch; only resampling differs."""
    for batches in (lambda m: m.train_batches(2), lambda m: m.val_batches()):
        ffcv_images, ffcv_labels = collect(batches(modules["ffcv"]))
        folder_images, folder_labels = collect(batches(modules["folder"]))
        assert torch.equal(ffcv_labels, folder_labels)
        diff = (ffcv_images.float() - folder_images.float()).abs()
        assert diff.mean() < 2.0 and diff.max() <= 24


def test_fresh_module_and_more_workers_reproduce_epoch(synth, modules, tmp_path):
    """A resumed run (new DataModule) with 2 FFCV threads / 2 DataLoader workers sees the
    same batches: per-sample seeds do not depend on threads or workers."""
    for loader in ("ffcv", "folder"):
        fresh = build_data(data_config(loader, synth, num_workers=2), data_cache=str(tmp_path), device=CPU, seed=7)
        assert torch.get_num_threads() == 1  # FFCV's thread setting does not leak
        got = collect(fresh.train_batches(5))
        want = collect(modules[loader].train_batches(5))
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_other_seed_other_batches(synth, tmp_path):
    a = build_data(data_config("folder", synth), data_cache=str(tmp_path), device=CPU, seed=1)
    b = build_data(data_config("folder", synth), data_cache=str(tmp_path), device=CPU, seed=2)
    (xa, ya), (xb, yb) = collect(a.train_batches(0)), collect(b.train_batches(0))
    assert torch.equal(ya.sort().values, yb.sort().values)  # the same samples...
    assert int((ya != yb).sum()) >= len(ya) // 3 and not torch.equal(xa, xb)  # ...in another order


def test_limits_cut_epochs(synth, tmp_path):
    for loader in ("ffcv", "folder"):
        dm = build_data(
            data_config(loader, synth, limit_train_batches=2, limit_val_batches=1), data_cache=str(tmp_path), device=CPU, seed=0
        )
        assert dm.steps_per_epoch() == 2
        assert len(list(dm.train_batches(0))) == 2
        assert len(list(dm.val_batches())) == 1
        # a cut epoch does not disturb the next one
        assert len(list(dm.train_batches(1))) == 2


def _producers() -> list:
    return [t for t in threading.enumerate() if type(t).__name__ == "EpochIterator" and t.is_alive()]


def test_no_ffcv_producer_thread_outlives_its_epoch(modules):
    """Stopping an epoch early stops FFCV's thread at once (a thread left running native code
    at interpreter exit can abort the process), whether it was still decoding or had reached
    the end of the epoch and was waiting to queue its end marker."""
    dm = modules["ffcv"]
    for take in (1, sum(1 for _ in dm.val_batches())):  # cut short; every batch taken but the end not yet seen
        batches = iter(dm.val_batches())
        for _ in range(take):
            next(batches)
        batches.close()
        assert _producers() == [], take
    next(iter(dm.train_batches(0)))
    dm.close()
    assert _producers() == []


def test_batch_size_is_global_and_split_over_processes(synth, tmp_path):
    """Each of 2 processes loads half the global batch over its half of the data, so both
    take as many steps per epoch as one process would; the folder loader shards by the rank
    it is given (FFCV's own sharding needs torch.distributed: tests/e2e/test_ddp.py runs that)."""
    one = build_data(data_config("folder", synth, batch_size=4, val_batch_size=4), data_cache=str(tmp_path), device=CPU, seed=0)
    shards = [
        build_data(
            data_config("folder", synth, batch_size=4, val_batch_size=4),
            data_cache=str(tmp_path),
            device=CPU,
            seed=0,
            rank=rank,
            world_size=2,
        )
        for rank in (0, 1)
    ]
    assert one.loading() == {
        "global_batch_size": 4,
        "batch_size_per_process": 4,
        "global_val_batch_size": 4,
        "val_batch_size_per_process": 4,
        "world_size": 1,
        "steps_per_epoch": one.steps_per_epoch(),
        "num_workers": 0,
    }
    for dm in shards:
        assert dm.loading() == {
            "global_batch_size": 4,
            "batch_size_per_process": 2,
            "global_val_batch_size": 4,
            "val_batch_size_per_process": 2,
            "world_size": 2,
            "steps_per_epoch": one.steps_per_epoch(),
            "num_workers": 0,
        }
        assert {len(labels) for _, labels in dm.train_batches(0)} == {2}
    with pytest.raises(DataError) as exc:
        build_data(
            data_config("folder", synth, batch_size=5, val_batch_size=4),
            data_cache=str(tmp_path),
            device=CPU,
            seed=0,
            rank=0,
            world_size=2,
        )
    assert str(exc.value) == (
        "data.batch_size=5 is the global batch and does not split evenly over 2 processes; allowed: a multiple of 2"
    )
    # evaluation sums counts over exact shards: an odd global val batch splits 3 + 2
    for rank, share in ((0, 3), (1, 2)):
        dm = build_data(
            data_config("folder", synth, batch_size=4, val_batch_size=5),
            data_cache=str(tmp_path),
            device=CPU,
            seed=0,
            rank=rank,
            world_size=2,
        )
        assert (dm.loading()["global_val_batch_size"], dm.loading()["val_batch_size_per_process"]) == (5, share)
        assert len(next(iter(dm.val_batches()))[1]) == share
    with pytest.raises(DataError, match="data.val_batch_size=1 is the global batch and is smaller than the 2 processes"):
        build_data(
            data_config("folder", synth, batch_size=4, val_batch_size=1),
            data_cache=str(tmp_path),
            device=CPU,
            seed=0,
            rank=0,
            world_size=2,
        )


def test_ddp_validation_covers_every_image_exactly_once(synth, tmp_path):
    """5 ranks over the 12 val images: no image twice, none missed (padding would add 3)."""
    one = build_data(data_config("folder", synth, batch_size=5, val_batch_size=5), data_cache=str(tmp_path), device=CPU, seed=0)
    n = sum(len(labels) for _, labels in one.val_batches())
    assert n % 5 != 0  # else padding would not show
    seen = []
    for rank in range(5):
        dm = build_data(
            data_config("folder", synth, batch_size=5, val_batch_size=5),
            data_cache=str(tmp_path),
            device=CPU,
            seed=0,
            rank=rank,
            world_size=5,
        )
        seen += [img.float().sum().item() for images, _ in dm.val_batches() for img in images]
    assert len(seen) == n
    assert sorted(seen) == sorted(img.float().sum().item() for images, _ in one.val_batches() for img in images)
    assert [val_shard(10, r, 3) for r in range(3)] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]


def test_loader_workers_follow_the_cpus_the_process_has(monkeypatch):
    mask = len(os.sched_getaffinity(0))
    for var in ("SLURM_CPUS_PER_TASK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert usable_cpus() == mask and resolve_num_workers(None) == max(1, mask - 1)
    assert resolve_num_workers(16) == 16  # an explicit value wins
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(mask))  # torchrun: the node's CPUs are shared
    assert usable_cpus() == 1 and resolve_num_workers(None) == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")  # SLURM's per-task allocation decides
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert usable_cpus() == 1


def test_progressive_resolution_changes_batch_size(synth, tmp_path):
    ramp = dict(min_res=32, max_res=64, start_ramp=1, end_ramp=3)
    for loader in ("ffcv", "folder"):
        dm = build_data(data_config(loader, synth, limit_train_batches=1, **ramp), data_cache=str(tmp_path), device=CPU, seed=0)
        sizes = [next(iter(dm.train_batches(e)))[0].shape[-1] for e in (0, 2, 3, 0)]
        assert sizes == [32, 64, 64, 32]
        assert next(iter(dm.val_batches()))[0].shape[-1] == 32


def test_resolution_schedule_matches_ffcv_rn50_rule():
    cfg = data_config("ffcv", {"train": "x", "val": "y"}, res=224, min_res=160, max_res=192, start_ramp=11, end_ramp=13)
    assert [resolution_for_epoch(cfg, e) for e in (0, 11, 12, 13, 15)] == [160, 160, 192, 192, 192]
    cfg = data_config("ffcv", {"train": "x", "val": "y"}, res=224, min_res=160, max_res=256, start_ramp=10, end_ramp=20)
    # linear 160 -> 256, rounded to multiples of 32
    assert [resolution_for_epoch(cfg, e) for e in (12, 15, 17)] == [192, 192, 224]
    assert resolution_for_epoch(data_config("ffcv", {"train": "x", "val": "y"}), 5) == 32


def test_prepare_normalizes_with_config_stats(modules):
    dm = modules["ffcv"]
    mean = torch.tensor([120.0, 110.0, 100.0]).view(1, 3, 1, 1)
    std = torch.tensor([60.0, 50.0, 40.0]).view(1, 3, 1, 1)
    # a constant image at the mean maps to 0, one at mean + std to 1
    at_mean = mean.expand(2, 3, 8, 8).to(torch.uint8)
    out = dm.prepare(at_mean)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 8, 8)
    assert torch.allclose(out, torch.zeros_like(out))
    out = dm.prepare((mean + std).expand(2, 3, 8, 8).to(torch.uint8))
    assert torch.allclose(out, torch.ones_like(out))
    # a real batch: mean/std of the output follow from the input statistics
    images, _ = next(iter(dm.val_batches()))
    out = dm.prepare(images)
    expected = (images.float().mean(dim=(0, 2, 3)) - mean.view(3)) / std.view(3)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), expected, atol=1e-4)
    assert torch.allclose(out.std(dim=(0, 2, 3)), images.float().std(dim=(0, 2, 3)) / std.view(3), atol=1e-4)
    assert images.dtype == torch.uint8  # input left untouched


def test_grayscale_and_cmyk_images_load_as_rgb(synth):
    from acdc_exp.data.image_tree import load_rgb

    gray = synth["tree"] / "train" / "class_00" / "train_00_0000.JPEG"
    cmyk = synth["tree"] / "train" / "class_01" / "train_01_0000.JPEG"
    g = np.asarray(load_rgb(str(gray)), dtype=np.float64)
    c = np.asarray(load_rgb(str(cmyk)), dtype=np.float64)
    assert g.shape[2] == 3 and c.shape[2] == 3
    assert np.allclose(g[..., 0], g[..., 1]) and np.allclose(g[..., 1], g[..., 2])
    assert np.abs(c.reshape(-1, 3).mean(0) - [200, 50, 50]).max() < 15
    assert VAL_PER_CLASS == 3  # the tree layout the other tests assume
