"""Gloo DDP with 2 CPU processes (torchrun): identical weights and masks on both ranks, and the
same result as one process with the same global batch (``data.batch_size`` is global), within
tolerance."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import ACDC_SHORT, REPO, cli, evaluate_checkpoint, load_state, small_overrides

COMMON = [*ACDC_SHORT, "trainer.device=cpu", "trainer.resume=never"]


def test_gloo_ddp_two_ranks_agree_and_match_one_process(acdc_short, tmp_path):
    single = acdc_short[1]  # ACDC_SHORT in one process, with the same global batch (64)
    runs_root = tmp_path / "runs"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # no hydra.run.dir: the ranks compose their configs apart in time, yet share one run dir
    proc = subprocess.run(
        [
            cli("torchrun"),
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "acdc_exp.cli.train",
            *small_overrides(runs_root),
            *COMMON,
            "data.batch_size=64",
            "data.val_batch_size=255",  # odd: the ranks evaluate 128 and 127 images per batch
            "trainer.sync_batchnorm=true",  # BN statistics over the global batch, as one process has them
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dirs = [p for p in runs_root.glob("*/*") if p.is_dir()]
    assert len(run_dirs) == 1 and run_dirs[0].name.startswith("torchrun_"), run_dirs
    ddp_dir = run_dirs[0]
    summary = json.loads((ddp_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and single["world_size"] == 1
    assert (summary["global_batch_size"], summary["batch_size_per_process"]) == (64, 32)
    assert (single["global_batch_size"], single["batch_size_per_process"]) == (64, 64)
    assert summary["steps_per_epoch"] == single["steps_per_epoch"]
    assert (summary["global_val_batch_size"], summary["val_batch_size_per_process"]) == (255, 128)
    assert summary["ranks_identical"] is True  # bit-identical weights and masks on both ranks
    assert summary["sync_batchnorm"] is True and single["sync_batchnorm"] is False  # no effect on one process
    assert summary["steps"] == single["steps"]  # same global batch -> same number of steps
    assert abs(summary["sparsity_pruned_layers"] - single["sparsity_pruned_layers"]) < 1e-3
    # the sample order differs, so results agree within tolerance
    assert summary["final_top1"] > 80.0 and single["final_top1"] > 80.0
    assert abs(summary["final_top1"] - single["final_top1"]) < 6.0
    # only rank 0 writes checkpoints: exactly one set
    assert sorted(p.name for p in (ddp_dir / "checkpoints").glob("*.pt")) == ["dense.pt", "final.pt", "last.pt"]
    # the uneven val shares count every image once: one process evaluating the saved final
    # member over the whole set (batches of 255) finds the same top-1
    alone = evaluate_checkpoint(str(ddp_dir), "final", ["trainer.device=cpu", "trainer.num_threads=1"])
    sharded = load_state(ddp_dir / "checkpoints" / "final.pt")["metrics"]
    assert alone["samples"] == sharded["samples"]
    assert alone["top1"] == sharded["top1"] == summary["final_top1"]


def _torchrun(runs_root, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [cli("torchrun"), "--standalone", "--nproc_per_node=2", "-m", "acdc_exp.cli.train", *small_overrides(runs_root)]
        + list(overrides),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


# one epoch of 22 steps; RigL updates at steps 0, 5, 10, 15 (T_end = 16)
RIGL_DDP = ["sparsity=rigl", "trainer.epochs=1", "sparsity.delta_t=5", "trainer.device=cpu", "trainer.resume=never"]


def test_rigl_masks_agree_on_both_ranks_and_a_rank_seeded_apart_stops_the_run(tmp_path):
    agree = _torchrun(tmp_path / "agree", *RIGL_DDP, "logger=console")
    assert agree.returncode == 0, agree.stderr[-3000:]
    # every mask computation compared the ranks' checksums before it went on (rank 0 logs)
    checked = [line for line in agree.stdout.splitlines() if line.startswith("[masks]")]
    assert [line.split(" step ")[1].split(":")[0] for line in checked] == ["0", "0", "5", "10", "15"]
    assert all(" checksum " in line for line in checked)
    summary = json.loads(next((tmp_path / "agree").glob("*/*/summary.json")).read_text())
    assert summary["ranks_identical"] is True and summary["world_size"] == 2

    # each rank seeds its masks with its own rank: the checksums differ at the first masks
    split = _torchrun(tmp_path / "split", *RIGL_DDP, "sparsity.seed=${oc.env:RANK}")
    assert split.returncode != 0
    said = [line for line in (split.stdout + split.stderr).splitlines() if line.startswith("acdc-train: error:")]
    assert len(said) == 1, split.stderr[-3000:]
    assert said[0].startswith("acdc-train: error: the ranks computed different masks at step 0: first layer that differs: ")
    assert "layer1.0.conv1.weight" in said[0]
    assert not list((tmp_path / "split").glob("*/*/checkpoints/*.pt"))  # nothing written
