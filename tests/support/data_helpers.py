"""Small builders shared by the data tests (synthetic tree, betons, DataConfig)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import torch
from omegaconf import OmegaConf

from acdc_exp.config.schema import register_configs
from acdc_exp.data.beton_writer import write_beton
from acdc_exp.data.datasets.files import FilesDataConfig
from acdc_exp.data.synthetic import class_colour, make_image_tree

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

CLASSES = 4
TRAIN_PER_CLASS = 6
VAL_PER_CLASS = 3


def make_synthetic_dataset(root: Path) -> Dict[str, Path]:
    """A tiny ImageNet-layout tree (odd sizes, one grayscale, one CMYK JPEG) and its betons."""
    tree = make_image_tree(
        root / "tree", classes=CLASSES, per_class=TRAIN_PER_CLASS, val_per_class=VAL_PER_CLASS, min_side=45, max_side=97, seed=0
    )
    paths = {"tree": tree}
    for split in ("train", "val"):
        paths[split] = write_beton(
            tree / split,
            root / f"{split}.beton",
            max_resolution=80,
            write_mode="proportion",
            compress_probability=0.5,
            num_workers=1,
            chunk_size=5,
        )
    return paths


def data_config(loader: str, paths: Dict[str, Path], **overrides) -> FilesDataConfig:
    """The data config (data=imagenet_* with its paths) for the synthetic dataset with the given loader (ffcv or folder)."""
    ffcv = loader == "ffcv"
    values = dict(
        name="synthetic",
        loader=loader,
        num_classes=CLASSES,
        batch_size=4,
        val_batch_size=5,
        num_workers=1 if ffcv else 0,
        res=32,
        val_res=32,
        batches_ahead=2,
        train_path=str(paths["train"] if ffcv else paths["tree"] / "train"),
        val_path=str(paths["val"] if ffcv else paths["tree"] / "val"),
        mean=[120.0, 110.0, 100.0],
        std=[60.0, 50.0, 40.0],
    )
    values.update(overrides)
    # the rest as the shipped ImageNet FFCV option sets it (the schema leaves values to the YAML)
    register_configs()  # the beton_path resolver its train/val paths use
    shipped = OmegaConf.to_container(OmegaConf.load(CONFIGS / "data" / "imagenet_ffcv.yaml"), resolve=True)
    return FilesDataConfig(**{**shipped, **values})


def nearest_class(images: torch.Tensor) -> torch.Tensor:
    """Class whose base colour is nearest to each image's mean colour."""
    colours = torch.tensor([class_colour(c) for c in range(CLASSES)], dtype=torch.float32)
    means = images.float().mean(dim=(2, 3))
    return torch.cdist(means, colours).argmin(dim=1)


def collect(batches) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*[(x.clone(), y.clone()) for x, y in batches])
    return torch.cat(images), torch.cat(labels)


def tree_labels(split_dir: Path) -> np.ndarray:
    """Labels of a split in ImageFolder order (sorted classes, sorted files)."""
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    return np.array([c for c, name in enumerate(classes) for _ in sorted((split_dir / name).iterdir())])
