"""data=fashion_mnist: IDX checks, conversion, loaders, and a 1-epoch AC/DC run on a subset of
the real files (the Debian package dataset-fashion-mnist, which scripts/setup.sh installs)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_state, one_error_line, run_cli, train

from acdc_exp.data.fashion_mnist import DEFAULT_DIR, IDX_FILES, ensure_fashion_mnist, fashion_arrays, read_idx
from acdc_exp.errors import DataError

TRAIN_SUBSET, TEST_SUBSET, HOLDOUT = 500, 200, 100


def _write_idx(path: Path, array: np.ndarray) -> None:
    dims = array.ndim
    header = (2048 + dims).to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def subset(tmp_path_factory) -> Path:
    """The first images of the package's files, in the package's format."""
    if not Path(DEFAULT_DIR, IDX_FILES["train_images"]).is_file():
        pytest.fail(f"Fashion-MNIST missing in {DEFAULT_DIR}: scripts/setup.sh installs dataset-fashion-mnist", pytrace=False)
    src = tmp_path_factory.mktemp("fashion_subset")
    for key, name in IDX_FILES.items():
        full = read_idx(Path(DEFAULT_DIR) / name, 3 if key.endswith("images") else 1)
        _write_idx(src / name, full[: TRAIN_SUBSET + HOLDOUT if key.startswith("train") else TEST_SUBSET])
    return src


def test_package_files_are_fashion_mnist() -> None:
    """The installed files read as 55,000 train / 5,000 val / 10,000 test, balanced classes."""
    arrays = fashion_arrays(DEFAULT_DIR)
    shapes = {k: v[0].shape for k, v in arrays.items()}
    assert shapes == {"train": (55000, 28, 28), "val": (5000, 28, 28), "test": (10000, 28, 28)}
    assert np.bincount(arrays["test"][1]).tolist() == [1000] * 10
    assert np.bincount(arrays["train"][1], minlength=10).sum() == 55000


def _copy_with(src: Path, dst: Path, name: str, data: bytes, *, raw: bool = False) -> None:
    dst.mkdir()
    for other in IDX_FILES.values():
        (dst / other).write_bytes((src / other).read_bytes())
    (dst / name).write_bytes(data if raw else gzip.compress(data))


@pytest.mark.parametrize(
    "case, expect",
    [
        ("truncated", "truncated or corrupt"),
        ("magic", "has magic number 2049, not 2051"),
        ("not_gzip", "is not a readable gzip IDX file"),
    ],
)
def test_bad_idx_file_is_one_line_and_writes_nothing(subset: Path, tmp_path: Path, case: str, expect: str) -> None:
    name = IDX_FILES["train_images"]
    good = gzip.decompress((subset / name).read_bytes())
    data = {"truncated": good[:-1000], "magic": (2049).to_bytes(4, "big") + good[4:], "not_gzip": b"not gzip at all"}[case]
    src = tmp_path / "src"
    _copy_with(subset, src, name, data, raw=case == "not_gzip")
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        ensure_fashion_mnist(src, cache, HOLDOUT)
    line = str(err.value)
    assert "\n" not in line and str(src / name) in line and expect in line
    assert not cache.exists() or not list(cache.glob("*.beton"))


def test_missing_package_is_one_line_from_the_cli(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    env = {**os.environ, "ACDC_DATA_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    args = ["data=fashion_mnist", f"data.source_dir={missing}", f"paths.runs_root={tmp_path}", "logger=none"]
    line = one_error_line(run_cli("acdc-train", *args, env=env), "acdc-train")
    assert f"Fashion-MNIST not found in {missing}" in line and "dataset-fashion-mnist" in line and "data.source_dir" in line
    assert not list(tmp_path.rglob("*.beton"))


def test_a_broken_cache_file_is_rebuilt(subset: Path, tmp_path: Path) -> None:
    """A .beton left half-written (a writer without the atomic rename, a copy cut short) is not
    read: the split sizes do not check out, so the files are written again."""
    cache = tmp_path / "cache"
    files = ensure_fashion_mnist(subset, cache, HOLDOUT)
    files.betons["train"].write_bytes(files.betons["train"].read_bytes()[:5000])
    again = ensure_fashion_mnist(subset, cache, HOLDOUT)
    from acdc_exp.data.beton import check_beton

    assert {s: check_beton(p).num_samples for s, p in again.betons.items()} == {"train": 500, "val": 100, "test": 200}
    # another holdout is another cache content (manifest.json says what the files hold)
    other = ensure_fashion_mnist(subset, cache, 50)
    assert {s: check_beton(p).num_samples for s, p in other.betons.items()} == {"train": 550, "val": 50, "test": 200}


def test_loaders_split_augment_and_replay(subset: Path, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from acdc_exp.config.compose import compose_config
    from acdc_exp.data import build_data

    cfg = compose_config(["data=fashion_mnist", f"data.source_dir={subset}", f"data.holdout={HOLDOUT}", "data.batch_size=50"])
    data_cfg = cfg.data
    data = build_data(data_cfg, data_cache=str(tmp_path), device=torch.device("cpu"), seed=3)
    assert data.steps_per_epoch() == TRAIN_SUBSET // 50
    val = list(data.val_batches())
    assert sum(len(y) for _, y in val) == HOLDOUT
    holdout = fashion_arrays(subset, HOLDOUT)["val"]
    assert torch.equal(val[0][0][:, 0].contiguous(), torch.from_numpy(holdout[0][: len(val[0][1])].copy()))  # val: unaugmented
    first = [x.clone() for x, _ in data.train_batches(0)]
    replay = [x.clone() for x, _ in data.train_batches(0)]
    assert all(torch.equal(a, b) for a, b in zip(first, replay))  # (seed, epoch) decide order and augmentation
    images = torch.cat(first)
    assert images.shape == (TRAIN_SUBSET, 3, 28, 28) and images.dtype == torch.uint8
    # the 4-px padded crop leaves zero rows/columns on shifted images; the raw images have
    # pixels on most borders, so a large share of shifted borders tells the crop is on
    rows_zero = images[:, 0].sum(dim=2) == 0
    shifted = (rows_zero[:, :4].all(dim=1) | rows_zero[:, -4:].all(dim=1)).float().mean().item()
    assert 0.2 < shifted < 0.9
    data.close()
    test_cfg = OmegaConf.merge(data_cfg, {"eval_split": "test"})
    data = build_data(test_cfg, data_cache=str(tmp_path), device=torch.device("cpu"), seed=3)
    assert sum(len(y) for _, y in data.val_batches()) == TEST_SUBSET


def test_one_epoch_acdc_run_with_flops(subset: Path, tmp_path: Path) -> None:
    """The study's experiment, 1 epoch of AC/DC on the subset: dense [0, .2), compressed
    [.2, .4), dense [.4, .6) (the pair's dense member ends it), compressed from .6; 20 steps."""
    from acdc_exp.models.small_resnet import SmallResNet
    from acdc_exp.training.compute import layer_macs

    summary = train(
        [
            "experiment=fashion_mnist_study",
            f"data.source_dir={subset}",
            f"data.holdout={HOLDOUT}",
            "data.batch_size=25",
            "trainer.epochs=1",
            "sparsity=acdc",
            "sparsity.sparsity=0.9",
            "sparsity.start_epoch=0",
            "sparsity.end_epoch=0.8",
            "sparsity.update_frequency=0.2",
            f"paths.data_cache={tmp_path / 'cache'}",
        ],
        tmp_path / "run",
    )
    assert summary["steps"] == 20 and summary["method"] == "acdc"
    assert summary["pair_dense_top1"] == summary["dense_top1"] is not None
    assert summary["sparsity_pruned_layers"] == pytest.approx(0.9, abs=0.01)
    macs = layer_macs(SmallResNet(num_classes=10, width=16, depth=8), 28)
    assert macs["conv1.weight"] == 28 * 28 * 16 * 3 * 9  # stem: 3 -> 16 channels, 3x3, 28x28 out
    assert macs["fc.weight"] == 64 * 10
    dense = 2 * sum(macs.values())
    assert summary["inference_flops_dense"] == dense
    # by hand: each pruned layer (every conv of layer1..3) at its final masks' density
    weights = load_state(tmp_path / "run" / "checkpoints" / "final.pt")["model"]
    density = {n: float((weights[n] != 0).float().mean()) for n in macs if n.startswith("layer")}
    assert all(d == pytest.approx(0.1, abs=0.02) for d in density.values())
    kept = 2 * sum(m * density.get(n, 1.0) for n, m in macs.items())
    assert summary["inference_flops"] == pytest.approx(kept, rel=1e-3)
    # 8 dense steps, 12 compressed: forward + backward (3 forwards) per image, batch 25
    assert summary["training_flops"] == pytest.approx(3 * 25 * (8 * dense + 12 * kept), rel=1e-3)
    assert summary["training_flops_ratio"] == pytest.approx((8 + 12 * kept / dense) / 20, rel=1e-3)
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["training_flops"] == summary["training_flops"]
    # acdc-eval reads the run's own data config (Fashion-MNIST's schema) and scores either split
    from conftest import evaluate_checkpoint

    on_val = evaluate_checkpoint(str(tmp_path / "run"), "final", ["trainer.num_threads=1"])
    assert on_val["samples"] == HOLDOUT and on_val["top1"] == pytest.approx(summary["final_top1"])
    on_test = evaluate_checkpoint(str(tmp_path / "run"), "final", ["data.eval_split=test", "trainer.num_threads=1"])
    assert on_test["samples"] == TEST_SUBSET
