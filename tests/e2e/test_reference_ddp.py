"""The reference job under torchrun with 2 gloo processes, end to end on CPU: a generated
ImageNet-layout tree -> .beton files -> FFCV -> ResNet-50 at 64 px -> the model card's recipe
scaled down (dense, compressed, QAT) -> int8 -> ONNX. A second run gets SIGTERM on both ranks
in the middle of a compressed phase, resumes, and must end with the uninterrupted run's
weights and masks; validation counts every image once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, assert_same_final_weights, cli, load_state, reference_betons

pytestmark = pytest.mark.slow

RECIPE = REPO / "recipes" / "resnet50_imagenet_pruned85_quant_acdc.md"
# 7 epochs of 4 steps: warm-up [0,1), dense [1,2), compressed [2,3), dense [3,4), compressed
# from 4, QAT [5,7) (steps: compressed 8-11 and from 16, QAT from 20; observers off at 22, BN at 24)
RECIPE_ARGS = (
    "{num_epochs: 7, lr_warmup_epochs: 1, quantization_epochs: 2, pruning_update_frequency: 1, "
    "quantization_keep_bn_epochs: 1, quantization_observer_epochs: 0.5}"
)
VAL_IMAGES = 5 * 3  # odd: a padded shard would count one image twice


@pytest.fixture(scope="module")
def reference_data(tmp_path_factory):
    return reference_betons(
        tmp_path_factory.mktemp("reference"), classes=5, per_class=8, val_per_class=3, max_side=110, max_resolution=80
    )


def _command(betons: Path, pretrained: Path, run: Path, export: bool = True) -> list:
    return [
        cli("torchrun"),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "acdc_exp.cli.train",
        "experiment=resnet50_imagenet_acdc85_quant",
        f"recipe={RECIPE}",
        f"recipe_args={RECIPE_ARGS}",
        f"model.weights={pretrained}",
        f"data.beton_dir={betons}",
        "data.max_resolution=80",  # as reference_betons wrote them
        "data.num_classes=5",
        "data.res=64",
        "data.val_res=64",
        "data.batch_size=8",
        "data.val_batch_size=8",
        "data.num_workers=1",
        "data.limit_train_batches=4",
        "trainer.num_threads=1",
        "trainer.progress=false",
        "trainer.device=cpu",
        # last.pt at the end and at a stop only: no 235 MB write every epoch
        "trainer.checkpoint_every_epochs=7",
        f"trainer.export_onnx={str(export).lower()}",
        "logger=console",
        "logger.log_every_steps=1",
        f"hydra.run.dir={run}",
    ]


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _workers(torchrun_pid: int) -> list:
    out = subprocess.run(["pgrep", "-P", str(torchrun_pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.fixture(scope="module")
def uninterrupted(reference_data, tmp_path_factory):
    betons, pretrained = reference_data
    run = tmp_path_factory.mktemp("ddp_full") / "run"
    proc = subprocess.run(_command(betons, pretrained, run), capture_output=True, text=True, timeout=900, cwd=REPO, env=_env())
    assert proc.returncode == 0, proc.stderr[-4000:] + proc.stdout[-500:]
    return run, proc.stdout


def test_reference_job_on_two_processes(uninterrupted):
    run, log = uninterrupted
    switches = [line.split()[-1] for line in log.splitlines() if line.startswith("[phase]")]
    assert switches == ["dense", "compressed", "dense", "compressed", "qat"]
    s = json.loads((run / "summary.json").read_text())
    assert (s["world_size"], s["global_batch_size"], s["batch_size_per_process"]) == (2, 8, 4)
    assert s["steps"] == 28 and s["final_phase"] == "qat" and s["ranks_identical"] is True
    # 4 images per process: SyncBatchNorm by default, through QAT fusion, int8 and export
    assert s["sync_batchnorm"] is True and s["qat_amp_dtype"] == "off"
    assert abs(s["sparsity_pruned_layers"] - 0.85) < 0.005
    assert s["onnx"]["all_ok"] is True
    # every validation image counted once, in the float and in the int8 evaluation
    assert load_state(run / "checkpoints" / "final.pt")["metrics"]["samples"] == VAL_IMAGES
    assert load_state(run / "checkpoints" / "final_int8.pt")["metrics"]["samples"] == VAL_IMAGES
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == ["dense.pt", "final.pt", "final_int8.pt", "last.pt"]


def test_sigterm_to_both_ranks_mid_compressed_phase_then_resume(reference_data, uninterrupted, tmp_path):
    betons, pretrained = reference_data
    full, _ = uninterrupted
    run = tmp_path / "run"
    cmd = _command(betons, pretrained, run, export=False)  # the uninterrupted run checks the export
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=_env())
    signalled = False
    deadline = time.time() + 600
    for line in proc.stdout:  # rank 0 announces the phase at the first step of the compressed phase
        if not signalled and line.startswith("[phase] epoch 2.00"):
            workers = _workers(proc.pid)
            assert len(workers) == 2, workers
            for pid in workers:  # as SLURM does on preemption: every task gets SIGTERM
                os.kill(pid, signal.SIGTERM)
            signalled = True
        assert time.time() < deadline
    proc.wait(timeout=120)
    assert signalled and proc.returncode != 0  # preempted: no result, the job is to be requeued
    state = load_state(run / "checkpoints" / "last.pt")
    assert 8 < state["step"] < 12, state["step"]  # inside the compressed phase, not at its edge
    assert state["sparsifier"]["masks"], "a compressed-phase checkpoint holds its masks"
    assert not (run / "summary.json").exists()

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO, env=_env())
    assert resumed.returncode == 0, resumed.stderr[-4000:] + resumed.stdout[-500:]
    s = json.loads((run / "summary.json").read_text())
    assert s["resumed_at_steps"] == [state["step"]] and s["steps"] == 28 and s["ranks_identical"] is True
    assert_same_final_weights(full, run)
    a = load_state(full / "checkpoints" / "final.pt")["sparsifier"]["masks"]
    b = load_state(run / "checkpoints" / "final.pt")["sparsifier"]["masks"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
