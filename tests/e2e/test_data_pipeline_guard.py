"""FFCV 1.0.2 hangs (on CPU) in Graph.group_operations for compiled -> torch -> compiled stages.

The real pipelines run in a subprocess with a timeout, so a regression fails instead of hanging
the suite; ``assert_pipeline_safe`` refuses the pattern before it reaches FFCV.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from acdc_exp.cli.data import main as data_main
from acdc_exp.errors import DataError

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]

_ITERATE = """
import contextlib, sys, torch
torch.set_num_threads(1)
from omegaconf import OmegaConf
from acdc_exp.registries import DATA
from acdc_exp.config.schema import register_configs
from acdc_exp.data import build_data
register_configs()
root = sys.argv[1]
for flip, crop in ((True, True), (False, False)):
    # the betons acdc-data write named (max side 64, all JPEG), found through the config's rule
    cfg = DATA.typed(OmegaConf.merge(OmegaConf.load(sys.argv[2]), dict(
        name="synthetic", beton_dir=root + "/betons", max_resolution=64, compress_probability=1.0,
        num_classes=3, batch_size=4, val_batch_size=4,
        num_workers=1, res=48, val_res=40, random_flip=flip, random_resized_crop=crop)))
    dm = build_data(cfg, data_cache=root, device=torch.device("cpu"), seed=0)
    n = sum(len(y) for _, y in dm.train_batches(0))
    m = sum(x.shape[0] for x, _ in dm.val_batches())
    with contextlib.closing(iter(dm.val_batches())) as batches:  # stop its loader thread before exit
        x, _ = next(batches)
    print("ok", n, m, tuple(x.shape), float(dm.prepare(x).abs().max()) < 10)
"""


@pytest.mark.timeout(400)
def test_real_cpu_pipelines_finish(tmp_path):
    """The CLI writes a tree and its betons; every CPU pipeline then runs to the end."""
    assert (
        data_main(
            [
                "synth",
                "--out",
                str(tmp_path / "tree"),
                "--classes",
                "3",
                "--per-class",
                "4",
                "--min-side",
                "50",
                "--max-side",
                "90",
            ]
        )
        == 0
    )
    assert (
        data_main(
            [
                "write",
                "--src",
                str(tmp_path / "tree"),
                "--out",
                str(tmp_path / "betons"),
                "--max-resolution",
                "64",
                "--write-mode",
                "jpg",
            ]
        )
        == 0
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _ITERATE, str(tmp_path), str(REPO / "configs" / "data" / "imagenet_ffcv.yaml")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("FFCV CPU pipeline did not finish in 300 s (group_operations hang?)")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:2] == ["ok 12 12 (4, 3, 40, 40) True"] * 2


def test_guard_refuses_compiled_after_torch():
    from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
    from ffcv.transforms import NormalizeImage, RandomHorizontalFlip, ToTensor, ToTorchImage

    from acdc_exp.data.ffcv_ops import assert_pipeline_safe

    norm = NormalizeImage(np.zeros(3), np.ones(3), np.float32)
    with pytest.raises(DataError, match="compiled op NormalizeImage after torch op ToTensor"):
        assert_pipeline_safe([SimpleRGBImageDecoder(), ToTensor(), ToTorchImage(), norm])
    with pytest.raises(DataError, match="RandomHorizontalFlip after torch op ToTensor"):
        assert_pipeline_safe([SimpleRGBImageDecoder(), ToTensor(), RandomHorizontalFlip()])
    # compiled ops first, then torch ones: accepted
    assert_pipeline_safe([SimpleRGBImageDecoder(), RandomHorizontalFlip(), norm, ToTensor(), ToTorchImage()])
    assert_pipeline_safe([IntDecoder(), ToTensor()])
