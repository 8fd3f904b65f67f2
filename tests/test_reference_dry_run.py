"""Dry run of the reference experiment on CPU, end to end: a tiny generated ImageNet-layout
dataset written to .beton files and read through FFCV, ResNet-50 at 64 px from a local
"pretrained" file, the SparseML recipe with its epochs scaled down through recipe variables
and a batch limit. It must pass through warm-up, dense and compressed phases, QAT, int8
conversion and ONNX export."""

from __future__ import annotations

import json
import subprocess

import torch
from conftest import REPO, cli, load_state, reference_betons

RECIPE = REPO / "recipes" / "resnet50_imagenet_pruned85_quant_acdc.md"
# 8 epochs: warm-up [0,1), dense [1,2), compressed [2,3), dense [3,4), compressed [4,6), QAT [6,8)
RECIPE_ARGS = (
    "{num_epochs: 8, lr_warmup_epochs: 1, quantization_epochs: 2, pruning_update_frequency: 1, quantization_keep_bn_epochs: 1}"
)


def test_reference_experiment_dry_run(tmp_path):
    run = tmp_path / "run"
    betons, pretrained = reference_betons(tmp_path, classes=4, per_class=6, val_per_class=4, max_side=120, max_resolution=96)

    proc = subprocess.run(
        [
            cli("acdc-train"),
            "experiment=resnet50_imagenet_acdc85_quant",
            f"recipe={RECIPE}",
            f"recipe_args={RECIPE_ARGS}",
            f"model.weights={pretrained}",
            f"data.train_path={betons / 'train.beton'}",
            f"data.val_path={betons / 'val.beton'}",
            "data.num_classes=4",
            "data.res=64",
            "data.val_res=64",
            "data.batch_size=8",
            "data.val_batch_size=8",
            "data.num_workers=1",
            "data.limit_train_batches=2",
            "trainer.num_threads=1",
            "trainer.progress=false",
            "trainer.export_onnx=true",
            "logger=console",
            f"hydra.run.dir={run}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout
    # every phase of the recipe happened, in order
    switches = [line for line in log.splitlines() if line.startswith("[phase]")]
    assert [s.split()[-1] for s in switches] == ["dense", "compressed", "dense", "compressed", "qat"]
    assert "[qat] quantization-aware training starts at epoch 6.00" in log

    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 8 and summary["steps"] == 16 and summary["final_phase"] == "qat"
    assert summary["dense_epoch"] == 4.0
    assert abs(summary["sparsity_pruned_layers"] - 0.85) < 0.005
    assert summary["sparse_int8_top1"] is not None and summary["qat_top1"] is not None
    assert summary["onnx"]["all_ok"] is True
    names = {p.split("/")[-1] for p in summary["onnx"]["files"]}
    assert {"dense_fp32.onnx", "final_int8_qdq.onnx"} <= names

    final = load_state(run / "checkpoints" / "final.pt")
    cfg = final["config"]
    assert cfg["sparsity"]["mask_type"] == "block4" and len(cfg["sparsity"]["params"]) == 52
    assert cfg["quantization"]["start_epoch"] == 6 and cfg["quantization"]["freeze_bn_stats_epoch"] == 7
    # block4 masks: every block of 4 input channels is kept or pruned as a whole, and the
    # pruned blocks are exactly zero in the int8 weights (rounding may add zeros elsewhere)
    mask = final["sparsifier"]["masks"]["layer2.0.conv2.weight"]  # [out, in, kh, kw]
    blocks = mask.permute(0, 2, 3, 1).reshape(-1, mask.shape[1] // 4, 4)
    assert torch.all(blocks.all(-1) | ~blocks.any(-1))
    assert abs(1 - blocks.float().mean().item() - 0.85) < 0.01
    int8 = load_state(run / "checkpoints" / "final_int8.pt")["model"]
    assert torch.all(int8["layer2.0.conv2.weight"].int_repr()[~mask] == 0)
