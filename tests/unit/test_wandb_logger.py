"""WandbLogger against real wandb in offline mode, read back from the .wandb file.

The trainer's calls are replayed here as a fixed, synthetic sequence, so every logged value
is known exactly; the end-to-end run through the trainer is in test_wandb_e2e.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from wandb_records import find_run_files, read_run

from acdc_exp.config.compose import compose_config
from acdc_exp.errors import ConfigError
from acdc_exp.loggers.metric_keys import step_row
from acdc_exp.loggers.plots import plot_training_curve
from acdc_exp.loggers.wandb_logger import WandbLogger, artifact_name, layer_key, run_name
from acdc_exp.records import MaskUpdate

LAYERS = ["layer1.0.conv1.weight", "layer2.0.downsample.0.weight"]


def logger_cfg(**kw):
    """configs/logger/wandb.yaml (offline, a row every step) with ``kw`` set."""
    cfg = compose_config(["logger=wandb", "logger.mode=offline", "logger.log_every_steps=1"]).logger
    for key, value in kw.items():
        cfg[key] = value
    return cfg


def step_metrics(step: int, phase: int, spe: int = 2) -> dict:
    return step_row(
        loss=2.0 - 0.1 * step,
        top1=10.0 * step,
        lr=0.1,
        weight_decay=5e-5,
        img_per_s=100.0,
        phase=phase,
        phase_name=["dense", "compressed", "qat"][phase],
        target_sparsity=0.8 if phase == 1 else 0.0,
        epoch=step / spe,
    )


def eval_metrics(prefix: str, top1: float, epoch: float) -> dict:
    return {f"{prefix}/top1": top1, f"{prefix}/top5": 99.0, f"{prefix}/loss": 0.5, "epoch": epoch}


def test_run_name_keeps_what_is_trained_and_drops_noise():
    name = run_name(
        "digits_acdc",
        [
            "sparsity.sparsity=0.95",
            "paths.run_dir=/x/y",
            "logger=wandb",
            "seed=1",
            "trainer.progress=false",
            "+recipe=recipes/acdc 90.md",
            "hydra.job.chdir=true",
        ],
    )
    assert name == "digits_acdc-sparsity.sparsity=0.95-seed=1-recipe=acdc_90"


def test_run_name_is_bounded_and_distinct():
    long_a = run_name("exp", [f"model.width={i}" for i in range(60)])
    long_b = run_name("exp", [f"model.width={i}" for i in range(61)])
    assert len(long_a) <= 128 and len(long_b) <= 128
    assert long_a != long_b
    assert run_name("a b/c", ["x=ü"]) == "a_b_c-x="


def test_layer_and_artifact_names():
    assert layer_key("layer1.0.conv1.weight") == "layer1_0_conv1"
    assert layer_key("module.fc.bias") == "module_fc_bias"
    assert artifact_name("acdc pair/run:1") == "acdc-pair-run-1"


def test_bad_mode_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="logger.mode='cloud'.*allowed: online, offline, disabled"):
        WandbLogger(logger_cfg(mode="cloud"), run_dir=tmp_path, config={})


def test_synthetic_acdc_sequence_round_trips(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))  # artifact staging
    overrides = ["sparsity.sparsity=0.8", "paths.run_dir=/somewhere", "seed=3"]
    lg = WandbLogger(
        logger_cfg(log_artifacts=True, tags=["t1"], group="g"),
        run_dir=tmp_path,
        config={"experiment_name": "demo", "sparsity": {"sparsity": 0.8, "method": "acdc"}},
        overrides=overrides,
    )
    # epochs of 2 steps: epoch 0-1 dense, masks at step 4 (epoch 2), compressed to step 8
    for step in range(1, 5):
        lg.log_step(step_metrics(step, 0), step)
    lg.log_eval(eval_metrics("val/dense", 50.0, 2.0), 4, 2.0)
    first = MaskUpdate(4, 2.0, 0.8, {LAYERS[0]: 0.8, LAYERS[1]: 0.75}, 0.78)
    lg.log_mask_update(first, 4)
    for step in range(5, 9):
        lg.log_step(step_metrics(step, 1), step)
    lg.log_eval(eval_metrics("val/sparse", 45.0, 4.0), 8, 4.0)
    second = MaskUpdate(
        8,
        4.0,
        0.8,
        {LAYERS[0]: 0.8, LAYERS[1]: 0.75},
        0.78,
        changed_fraction=0.1,
        layer_changed={LAYERS[0]: 0.12, LAYERS[1]: 0.05},
        drop_fraction=0.15,  # as a RigL update logs it
        checksum="0a1b2c3d",
    )
    lg.log_mask_update(second, 8)
    curve = plot_training_curve(
        [(2.0, "dense", 50.0), (4.0, "compressed", 45.0)],
        [(0.0, 2.0, "dense"), (2.0, 4.0, "compressed")],
        tmp_path / "training_curve.png",
    )
    lg.log_image("plots/training_curve", curve)
    ckpt_dir = tmp_path / "checkpoints"
    ckpt_dir.mkdir()
    for member in ("dense", "final"):
        torch.save({"model": {}}, ckpt_dir / f"{member}.pt")
    lg.log_summary(
        {
            "dense_top1": 50.0,
            "sparse_top1": 45.0,
            "dense_sparse_gap": 5.0,
            "sparse_int8_top1": None,
            "params_total": 100,
            "params_nonzero": 22,
            "checkpoints": {"dense": str(ckpt_dir / "dense.pt"), "final": str(ckpt_dir / "final.pt")},
        }
    )
    lg.finish()
    lg.finish()  # idempotent: the trainer's finally may call it after an explicit finish

    run = read_run(tmp_path)
    assert run.run_id == lg.run_id
    assert run.name == "demo-sparsity.sparsity=0.8-seed=3"
    assert run.tags == ["t1"] and run.group == "g" and run.project == "acdc-exp"
    assert run.config["sparsity"] == {"sparsity": 0.8, "method": "acdc"}
    assert run.config["overrides"] == overrides
    assert run.exit_codes == [0]

    # per-step keys in their sections, the optimizer step as W&B's step
    assert run.series("schedule/phase", x="trainer/step") == [(s, 0 if s <= 4 else 1) for s in range(1, 9)]
    assert [r["_step"] for r in run.history if "trainer/step" in r] == [
        r["trainer/step"] for r in run.history if "trainer/step" in r
    ]
    assert run.series("schedule/phase_name", x="trainer/step")[4] == (5, "compressed")
    assert run.series("train/img_per_s", x="trainer/step")[0] == (1, 100.0)
    assert run.series("schedule/target_sparsity", x="trainer/step")[-1] == (8, 0.8)
    assert run.series("val/dense/top1", x="epoch") == [(2.0, 50.0)]
    assert run.series("val/sparse/top1", x="epoch") == [(4.0, 45.0)]

    # mask updates: scalars, stability, table and chart, in the rows of their steps
    row4 = next(r for r in run.history if r.get("trainer/step") == 4)
    assert row4["sparsity/layer/layer1_0_conv1"] == pytest.approx(0.8)
    assert row4["sparsity/layer/layer2_0_downsample_0"] == pytest.approx(0.75)
    assert row4["sparsity/global"] == pytest.approx(0.78) and row4["sparsity/target"] == pytest.approx(0.8)
    assert "sparsity/mask_changed" not in row4
    assert run.series("sparsity/mask_changed", x="epoch") == [(4.0, pytest.approx(0.1))]
    table = run.load_table(row4["sparsity/layers"])
    assert table == [
        {"param": LAYERS[0], "sparsity": pytest.approx(0.8), "mask_changed": None},
        {"param": LAYERS[1], "sparsity": pytest.approx(0.75), "mask_changed": None},
    ]
    assert run.media_file(row4["sparsity/layers_chart"]).suffix == ".png"
    # a RigL update: the fraction of each layer's mask it changed and its drop fraction f(t),
    # scalars only (no table or chart for each of RigL's frequent updates)
    row8 = next(r for r in run.history if r.get("trainer/step") == 8)
    assert row8["sparsity/layer_changed/layer1_0_conv1"] == pytest.approx(0.12)
    assert row8["sparsity/layer_changed/layer2_0_downsample_0"] == pytest.approx(0.05)
    assert row8["sparsity/drop_fraction"] == pytest.approx(0.15) and "sparsity/drop_fraction" not in row4
    assert "sparsity/layers" not in row8 and "sparsity/layers_chart" not in row8
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["layer_sparsity_step00000004.png"]
    updates = run.load_table(run.summary["sparsity/updates"])
    assert [u["mask_changed"] for u in updates] == [None, pytest.approx(0.1)]
    assert [(u["drop_fraction"], u["checksum"]) for u in updates] == [(None, None), (pytest.approx(0.15), "0a1b2c3d")]
    assert run.media_file(run.summary["plots/training_curve"]).stat().st_size > 1000

    # x axes: epoch for val and sparsity, the optimizer step for train and schedule
    axes = {m["glob_name"]: m["step_metric"] for m in run.metrics if m["glob_name"]}
    assert axes == {"train/*": "trainer/step", "schedule/*": "trainer/step", "val/*": "epoch", "sparsity/*": "epoch"}

    # summary: the pair, without the Nones; artifacts: the pair's checkpoints
    assert run.summary["dense_top1"] == 50.0 and run.summary["sparse_top1"] == 45.0
    assert run.summary["dense_sparse_gap"] == 5.0 and "sparse_int8_top1" not in run.summary
    assert run.summary["checkpoints"]["final"].endswith("final.pt")
    (model,) = [a for a in run.artifacts if a["type"] == "model"]
    assert model["name"] == f"acdc-pair-{lg.run_id}"
    assert sorted(model["files"]) == ["dense.pt", "final.pt"]
    assert model["metadata"]["dense_sparse_gap"] == 5.0


def test_finish_inside_an_exception_marks_the_run_failed(tmp_path: Path):
    lg = WandbLogger(logger_cfg(), run_dir=tmp_path, config={"experiment_name": "crash"})
    lg.log_step(step_metrics(1, 0), 1)
    with pytest.raises(RuntimeError):
        try:
            raise RuntimeError("diverged")
        finally:
            lg.finish()
    run = read_run(tmp_path)
    assert run.exit_codes == [1]
    assert run.series("train/loss", x="trainer/step") == [(1, pytest.approx(1.9))]


def test_resume_keeps_run_id_and_name_and_merges_segments(tmp_path: Path):
    first = WandbLogger(logger_cfg(), run_dir=tmp_path, config={"experiment_name": "res"}, overrides=["seed=1"])
    for step in (1, 2, 3):
        first.log_step(step_metrics(step, 0), step)
    first.finish()
    # the resumed process passes the run id stored in the checkpoint, and other overrides
    second = WandbLogger(
        logger_cfg(),
        run_dir=tmp_path,
        config={"experiment_name": "res"},
        resume_id=first.run_id,
        overrides=["seed=1", "trainer.epochs=9"],
    )
    assert second.run_id == first.run_id
    for step in (4, 5):
        second.log_step(step_metrics(step, 1), step)
    second.finish()
    assert len(find_run_files(tmp_path)) == 2
    run = read_run(tmp_path)
    assert run.run_id == first.run_id and len(run.segments) == 2
    assert run.name == "res-seed=1"
    assert [s for s, _ in run.series("schedule/phase", x="trainer/step")] == [1, 2, 3, 4, 5]
    assert run.exit_codes == [0, 0]


def test_a_sweeps_runs_share_a_group(tmp_path: Path):
    """group: null in a sweep gives <experiment>-sweep-<sweep_name>; outside one, no group."""
    for sweep, group in (("sparsity", "demo-sweep-sparsity"), (None, "")):  # "": the record has no group
        run_dir = tmp_path / str(sweep)
        lg = WandbLogger(logger_cfg(), run_dir=run_dir, config={"experiment_name": "demo", "sweep_name": sweep})
        lg.finish()
        assert read_run(run_dir).group == group, sweep


def test_disabled_mode_writes_no_run_files(tmp_path: Path, monkeypatch):
    # wherever wandb could write (the run dir, the working dir, WANDB_DIR) is under tmp_path,
    # and the same calls in offline mode write one .wandb file there: the search can fail
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    for mode, files in (("offline", 1), ("disabled", 0)):
        run_dir = tmp_path / mode
        lg = WandbLogger(logger_cfg(mode=mode), run_dir=run_dir, config={})
        lg.log_step(step_metrics(1, 0), 1)
        lg.log_mask_update(MaskUpdate(1, 0.5, 0.8, {LAYERS[0]: 0.8}, 0.8), 1)
        lg.log_summary({"dense_top1": 1.0})
        lg.finish()
        assert len(list(tmp_path.rglob("*.wandb"))) == 1, mode  # offline's, and no other
        assert len(list(run_dir.rglob("*.wandb"))) == files, mode
