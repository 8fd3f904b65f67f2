"""Throughput of the FFCV train loader vs torchvision ImageFolder + PIL on the same JPEGs.

Generates ImageNet-like JPEGs (sides 300-500 px, photo-like grain), writes them to .beton files
the way FFCV's ImageNet betons are written (50% JPEG at quality 90; max side 500 and 256), then
times train epochs at 224 px with RandomResizedCrop + flip and uint8 output on the CPU:

- ``ffcv_<max side>``: ``DataModule`` with ``loader=ffcv`` (what the trainer gets);
- ``folder``: ``DataModule`` with ``loader=folder`` (the torchvision fallback);
- ``torchvision``: plain ``ImageFolder`` + ``RandomResizedCrop``/``RandomHorizontalFlip``/
  ``PILToTensor`` in a ``DataLoader``, the usual reference.

The first epoch (numba compilation, worker start-up) is reported apart; then the loaders take
turns epoch by epoch and the median epoch counts, which evens out load from other processes.
Prints a markdown table and writes ``bench/results/loaders.json``. Not a test.

    python bench/bench_loaders.py [--images 2000] [--workers 2] [--epochs 3] [--max-resolution 500 256]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterable

import torch

from acdc_exp.machine import describe

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from omegaconf import OmegaConf  # noqa: E402

from acdc_exp.config.schema import register_configs  # noqa: E402
from acdc_exp.data import build_data  # noqa: E402
from acdc_exp.data.beton_names import beton_file_name  # noqa: E402
from acdc_exp.data.beton_writer import write_beton  # noqa: E402
from acdc_exp.data.datasets.files import FilesDataConfig as DataConfig  # noqa: E402
from acdc_exp.data.synthetic import make_image_tree  # noqa: E402


def _tree(cache: Path, images: int, classes: int) -> Path:
    tree = cache / f"tree_{images}_{classes}"
    if not (tree / "train").is_dir():
        make_image_tree(
            tree,
            classes=classes,
            per_class=images // classes,
            val_per_class=2,
            min_side=300,
            max_side=500,
            seed=0,
            odd_modes=True,
            noise=20.0,
        )
    return tree


def _betons(cache: Path, tree: Path, max_resolution: int) -> Dict[str, Path]:
    """FFCV-ImageNet-style betons, named as acdc-data write names them (``train_500_0.50_90.beton``)."""
    folder = cache / f"betons_{tree.name}"
    betons = {split: folder / beton_file_name(split, max_resolution, 0.5, 90) for split in ("train", "val")}
    for split, beton in betons.items():
        if not beton.is_file():
            write_beton(
                tree / split,
                beton,
                max_resolution=max_resolution,
                jpeg_quality=90,
                compress_probability=0.5,
                write_mode="proportion",
                num_workers=os.cpu_count() or 1,
                chunk_size=50,
            )
    return betons


def _epoch(batches: Iterable) -> Dict[str, float]:
    n, start = 0, time.perf_counter()
    for images, labels in batches:
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, 224, 224)
        n += labels.shape[0]
    seconds = time.perf_counter() - start
    return {"images": n, "seconds": seconds, "img_per_s": n / seconds}


def _torchvision_reference(tree: Path, workers: int, batch: int):
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.PILToTensor()])
    dataset = datasets.ImageFolder(str(tree / "train"), transform=tf)
    loader = DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    return lambda epoch: loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--max-resolution", type=int, nargs="+", default=[500, 256], help="max side of the stored images; one FFCV run per value"
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "acdc-bench-loaders")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "loaders.json")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the loaders' own workers do the work
    load_before = os.getloadavg()

    t0 = time.perf_counter()
    tree = _tree(args.cache, args.images, args.classes)
    betons = {res: _betons(args.cache, tree, res) for res in args.max_resolution}
    prep_seconds = time.perf_counter() - t0
    tree_mb = sum(f.stat().st_size for f in (tree / "train").rglob("*")) / 2**20

    # the shipped ImageNet FFCV option, with the benchmark's sizes
    register_configs()  # the beton_path resolver its paths use
    shipped = OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "data" / "imagenet_ffcv.yaml"), resolve=True)
    common = dict(
        shipped,
        name="bench",
        num_classes=args.classes,
        batch_size=args.batch_size,
        val_batch_size=args.batch_size,
        num_workers=args.workers,
        res=224,
        val_res=224,
        random_resized_crop=True,
        random_flip=True,
        order="random",
        drop_last=True,
    )
    cpu = torch.device("cpu")
    loaders: Dict[str, Callable[[int], Iterable]] = {}
    names: Dict[str, str] = {}
    for res, paths in betons.items():
        key = f"ffcv_{res}"
        dm = build_data(
            DataConfig(**{**common, "loader": "ffcv", "train_path": str(paths["train"]), "val_path": str(paths["val"])}),
            data_cache=str(args.cache),
            device=cpu,
            seed=0,
        )
        loaders[key] = dm.train_batches
        names[key] = f"FFCV, DataModule (beton max side {res}, {paths['train'].stat().st_size / 2**20:.0f} MiB)"
    folder = build_data(
        DataConfig(**{**common, "loader": "folder", "train_path": str(tree / "train"), "val_path": str(tree / "val")}),
        data_cache=str(args.cache),
        device=cpu,
        seed=0,
    )
    loaders["folder"] = folder.train_batches
    names["folder"] = "torchvision fallback, DataModule (loader=folder)"
    loaders["torchvision"] = _torchvision_reference(tree, args.workers, args.batch_size)
    names["torchvision"] = "torchvision ImageFolder + PIL DataLoader (reference)"

    # Epoch 0 of each loader compiles (numba) or starts workers; then the loaders take turns
    # epoch by epoch so that load from other processes hits all of them alike.
    warmup = {name: _epoch(batches(0)) for name, batches in loaders.items()}
    timed: Dict[str, list] = {name: [] for name in loaders}
    for epoch in range(1, 1 + args.epochs):
        for name, batches in loaders.items():
            timed[name].append(_epoch(batches(epoch)))
    runs = {
        name: {
            "label": names[name],
            "warmup": warmup[name],
            "epochs": timed[name],
            "median_img_per_s": statistics.median(e["img_per_s"] for e in timed[name]),
        }
        for name in loaders
    }

    base = runs["torchvision"]["median_img_per_s"]
    print(
        f"\n{args.images} JPEGs of 300-500 px ({tree_mb:.0f} MiB); betons 50% JPEG q90; "
        f"224 px RandomResizedCrop + flip, uint8 NCHW, {args.workers} workers, batch "
        f"{args.batch_size}; median of {args.epochs} epochs\n"
    )
    print("| loader | first epoch img/s | img/s (median) | speed-up vs torchvision |")
    print("|---|---:|---:|---:|")
    for r in runs.values():
        print(
            f"| {r['label']} | {r['warmup']['img_per_s']:.0f} | {r['median_img_per_s']:.0f} | "
            f"{r['median_img_per_s'] / base:.2f}x |"
        )

    import ffcv as ffcv_pkg
    import numpy
    import PIL
    import torchvision

    record = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {**describe(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "versions": {
            "ffcv": ffcv_pkg.__version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "numpy": numpy.__version__,
            "pillow": PIL.__version__,
            "python": platform.python_version(),
        },
        "setup": {
            "images": args.images,
            "classes": args.classes,
            "workers": args.workers,
            "batch_size": args.batch_size,
            "timed_epochs": args.epochs,
            "res": 224,
            "max_resolution": args.max_resolution,
            "write_mode": "proportion",
            "compress_probability": 0.5,
            "jpeg_quality": 90,
            "tree_mib": tree_mb,
            "prepare_seconds": prep_seconds,
        },
        "results": runs,
        "speedup_vs_torchvision": {name: r["median_img_per_s"] / base for name, r in runs.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
