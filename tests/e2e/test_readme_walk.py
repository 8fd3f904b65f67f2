"""README.md's main path, walked as a new user would: its own ``walk=main`` blocks, in order,
in one shell, from a checkout-like folder (links to this checkout's .venv, scripts and recipes),
on a small ImageNet-layout tree the README itself makes. Set-up check, ``acdc-data write``, the
pretrained weights into the torch cache, the reference experiment at toy scale through every
phase (block4 masks, exact zeros in int8: what the reference dry run checked), ``acdc-eval``,
``acdc-export``, a sweep on the local SLURM cluster, ``acdc-sweep-collect`` and the
``wandb sync`` paths.

Two stand-ins, both for the network these machines do not have: the torch hub cache already
holds a ResNet-50 state dict under torchvision's file name (random weights, so the README's
fetch command finds it and downloads nothing), and ``wandb sync`` lists the paths it was given
(``ls -d`` fails when the glob matches nothing) instead of uploading them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, load_state
from doc_walk import all_paths, failed_step, run_walk, steps

README = REPO / "README.md"
VENV = Path(sys.executable).parent.parent
WANDB_SYNC_LISTS = 'wandb() { if [ "$1" = sync ]; then shift; ls -d "$@"; else command wandb "$@"; fi; }'


def checkout_like(root: Path) -> Path:
    home = root / "checkout"
    home.mkdir()
    for name in ("scripts", "recipes"):
        (home / name).symlink_to(REPO / name)
    (home / ".venv").symlink_to(VENV)
    return home


def torch_cache_with_resnet50(root: Path) -> Path:
    """$TORCH_HOME whose hub cache holds IMAGENET1K_V1's file name, as the README's fetch leaves it."""
    from torchvision.models import ResNet50_Weights

    from acdc_exp.models import build_model

    cache = root / "torch"
    target = cache / "hub" / "checkpoints" / os.path.basename(ResNet50_Weights.IMAGENET1K_V1.url)
    target.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(build_model("resnet50", num_classes=1000).state_dict(), target)
    return cache


def test_readme_marks_a_main_path():
    assert "main" in all_paths(README)
    commands = " ".join(s.text for s in steps(README, "main"))
    for needed in (
        "setup.sh --check",
        "acdc-data write",
        "acdc-train",
        "acdc-eval",
        "acdc-export",
        "acdc-sweep-collect",
        "wandb sync",
    ):
        assert needed in commands, needed


@pytest.mark.slurm
def test_readme_main_path(tmp_path, slurm_cluster):
    home = checkout_like(tmp_path)
    env = {
        "TORCH_HOME": str(torch_cache_with_resnet50(tmp_path)),
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
        "ACDC_RUNS_ROOT": "runs",
    }
    proc = run_walk(steps(README, "main"), cwd=home, env=env, prelude=WANDB_SYNC_LISTS, timeout=1500)
    assert proc.returncode == 0, failed_step(proc)

    # the toy reference run went through every phase of the recipe and exported
    toy = home / "runs" / "toy"
    switches = [line.split()[-1] for line in proc.stdout.splitlines() if line.startswith("[phase]")]
    assert switches[:5] == ["dense", "compressed", "dense", "compressed", "qat"]
    summary = json.loads((toy / "summary.json").read_text())
    assert summary["final_phase"] == "qat" and summary["sparse_int8_top1"] is not None
    assert abs(summary["sparsity_pruned_layers"] - 0.85) < 0.005
    assert summary["epochs"] == 8 and summary["steps"] == 16 and summary["dense_epoch"] == 4.0
    assert summary["qat_top1"] is not None
    assert (home / "toy" / "ffcv" / "train_500_0.50_90.beton").exists()
    final = load_state(toy / "checkpoints" / "final.pt")
    cfg = final["config"]
    assert cfg["model"]["pretrained"] is True  # the card's --pretrained True, from the torch cache
    assert cfg["sparsity"]["mask_type"] == "block4" and len(cfg["sparsity"]["params"]) == 52
    assert cfg["quantization"]["start_epoch"] == 6 and cfg["quantization"]["freeze_bn_stats_epoch"] == 7
    # block4 masks: every block of 4 input channels is kept or pruned as a whole, and the pruned
    # blocks are exactly zero in the int8 weights (rounding may add zeros elsewhere)
    mask = final["sparsifier"]["masks"]["layer2.0.conv2.weight"]  # [out, in, kh, kw]
    blocks = mask.permute(0, 2, 3, 1).reshape(-1, mask.shape[1] // 4, 4)
    assert torch.all(blocks.all(-1) | ~blocks.any(-1))
    assert abs(1 - blocks.float().mean().item() - 0.85) < 0.01
    int8 = load_state(toy / "checkpoints" / "final_int8.pt")["model"]
    assert torch.all(int8["layer2.0.conv2.weight"].int_repr()[~mask] == 0)
    assert any(p.name.endswith("int8_qoperator.onnx") for p in toy.rglob("*.onnx"))
    # the sweep: one run dir per job, numbered, each with its offline W&B run; the collected table
    sweep = home / "runs" / "demo-sweep"
    jobs = sorted(p.name for p in sweep.iterdir() if p.name.isdigit())
    assert jobs == ["0", "1", "2", "3"]
    for job in jobs:
        assert list((sweep / job / "wandb").glob("offline-run-*/run-*.wandb")), job
    table = (sweep / "sweep_summary.md").read_text()
    for sparsity in ("0.8", "0.9", "0.95", "0.98"):
        assert sparsity in table, table
    assert (sweep / "sweep_summary.png").stat().st_size > 0


SLURM_README = REPO / "slurm" / "README.md"


@pytest.mark.parametrize("doc", [README, SLURM_README], ids=["README", "slurm-README"])
def test_cluster_commands_compose_for_their_presets(tmp_path, doc):
    """The GPU and cluster commands (``walk=check``), each with ``--check``: every job composes
    and validates against its launcher preset (batches split over its ranks), nothing queued.
    torchrun's line starts its 8 processes, each of which checks its own config."""
    walk = steps(doc, "check")
    assert walk, f"{doc.name} has no walk=check block"
    activate = "source .venv/bin/activate"  # as the README's main path has done before these
    proc = run_walk(walk, cwd=checkout_like(tmp_path), env={"OMP_NUM_THREADS": "1"}, prelude=activate, timeout=600)
    assert proc.returncode == 0, failed_step(proc)
    commands = sum(s.text.count("acdc-train") + s.text.count("torchrun") for s in walk)
    assert proc.stdout.count("nothing launched (--check)") >= commands
    assert not (tmp_path / "checkout" / "runs").exists()


@pytest.mark.slurm
def test_slurm_readme_on_the_local_cluster(tmp_path, slurm_cluster):
    home = checkout_like(tmp_path)
    env = {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "ACDC_RUNS_ROOT": "runs"}
    prelude = f"source .venv/bin/activate\n{WANDB_SYNC_LISTS}"
    proc = run_walk(steps(SLURM_README, "slurm"), cwd=home, env=env, prelude=prelude, timeout=900)
    assert proc.returncode == 0, failed_step(proc)
    sweep = home / "runs" / "local-sweep"
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1"]
    for num, target in ((0, 0.8), (1, 0.9)):
        job = sweep / str(num)
        summary = json.loads((job / "summary.json").read_text())
        assert summary["epochs"] == 1 and abs(summary["sparsity_pruned_layers"] - target) < 0.01
        assert (job / "checkpoints" / "final.pt").exists() and (job / "checkpoints" / "dense.pt").exists()
        assert summary["wandb_run_id"] and list((job / "wandb").glob("offline-run-*/run-*.wandb"))
    assert "| acdc | unstructured | 0.80 |" in proc.stdout and "| acdc | unstructured | 0.90 |" in proc.stdout
    assert (sweep / "sweep_summary.png").stat().st_size > 1000
