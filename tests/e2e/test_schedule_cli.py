"""acdc-schedule: the plan of any experiment, without training, as table, JSON trace or PNG."""

from __future__ import annotations

import json
import subprocess

from conftest import run_cli

EXP = "experiment=resnet50_imagenet_acdc85_quant"


def run(*args: str) -> subprocess.CompletedProcess:
    return run_cli("acdc-schedule", *args)


def table(out: subprocess.CompletedProcess) -> tuple[str, dict]:
    """(the header line saying the steps per epoch, {epoch: row's fields})."""
    assert out.returncode == 0, out.stderr
    header, columns, *lines = out.stdout.splitlines()
    assert header.startswith("# ") and columns.split()[:2] == ["epoch", "phase"], out.stdout[:500]
    return header, {int(line.split()[0]): line.split() for line in lines}


def test_table_shows_the_206_epoch_plan():
    header, rows = table(run(EXP))
    assert len(rows) == 206
    assert rows[9][1] == "dense" and rows[10][1] == "compressed" and rows[15][1] == "dense"
    assert rows[180][1] == "compressed" and rows[199][1] == "compressed" and rows[200][1] == "qat"
    assert "update" in rows[185] and "update" in rows[190] and "update" not in rows[186]


def test_json_trace_per_step_and_plot(tmp_path):
    png = tmp_path / "plan.png"
    out = run(EXP, "schedule.format=json", "schedule.steps_per_epoch=3", f"schedule.plot={png}")
    assert out.returncode == 0, out.stderr
    trace = json.loads(out.stdout)
    steps = trace["steps"]
    assert trace["steps_per_epoch"] == 3 and len(steps) == 206 * 3
    assert [s["step"] for s in steps if s["qat_start"]] == [600]
    assert steps[30]["update_masks"] and steps[30]["phase"] == "compressed"  # epoch 10
    assert abs(steps[15]["lr"] - 0.256) < 1e-12  # end of warm-up, epoch 5
    assert png.stat().st_size > 5000


def test_reference_plan_uses_imagenet_steps_per_epoch():
    """No .beton here: ImageNet-1k's 1,281,167 train images in global batches of 256, the last
    partial one dropped, are 5004 steps; the same over the 8 ranks of the 8-GPU preset."""
    for launcher in ([], ["hydra/launcher=slurm_1node_8gpu"]):
        out = run(EXP, *launcher)
        header, _ = table(out)
        assert header.startswith("# 5004 steps per epoch: 1281167 train images (data.train_images"), header
        assert ("8 processes" in header) == bool(launcher)
        note = out.stderr.strip()
        assert note.count("\n") == 0 and note.startswith("acdc-schedule: note: /data/imagenet/train_500_0.50_90.beton not found")
        assert "schedule.steps_per_epoch=N" in note


def test_an_existing_beton_gives_its_image_count(tmp_path):
    """The configured train .beton is there: its header's count, not the ImageNet hint."""
    tree, betons = tmp_path / "tree", tmp_path / "betons"
    for args in (
        ["synth", "--out", str(tree), "--classes", "2", "--per-class", "5", "--min-side", "30", "--max-side", "40"],
        ["write", "--src", str(tree), "--out", str(betons), "--max-resolution", "32"],
    ):
        assert run_cli("acdc-data", *args).returncode == 0
    out = run(EXP, f"data.beton_dir={betons}", "data.max_resolution=32", "data.batch_size=4")
    header, rows = table(out)
    beton = betons / "train_32_0.50_90.beton"
    assert header.startswith(f"# 2 steps per epoch: 10 train images (the header of {beton}) in batches of 4"), header
    assert out.stderr == "" and len(rows) == 206


def test_demo_shows_the_dense_phase_ramp():
    """The digits split (1437 train images, batch 64) gives 22 steps per epoch, so the first
    step of each dense phase after a compressed one shows the lr ramp's start (1/22 of the lr)."""
    out = run()
    header, rows = table(out)
    assert header.startswith("# 22 steps per epoch: 1437 train images (the digits train split)"), header
    assert out.stderr == ""
    lr = {epoch: float(row[3]) for epoch, row in rows.items()}
    # compressed [5, 8), dense again from 8 (acdc.yaml: start 2, period 3, 1 epoch of ramp)
    assert rows[7][1] == "compressed" and rows[8][1] == "dense" and rows[9][1] == "dense"
    assert 0 < lr[8] < lr[7] / 10 and lr[9] > lr[7] * 0.8
    trace = json.loads(run("schedule.format=json").stdout)
    assert trace["steps_per_epoch"] == 22 and "digits" in trace["steps_per_epoch_source"]
    ramp = [s["lr"] for s in trace["steps"][8 * 22 : 9 * 22]]
    assert all(a < b for a, b in zip(ramp, ramp[1:]))  # climbs step by step through epoch 8


def test_limit_and_explicit_steps_per_epoch():
    header, _ = table(run("data.limit_train_batches=5"))
    assert header.startswith("# 5 steps per epoch:") and "data.limit_train_batches=5" in header
    header, _ = table(run("schedule.steps_per_epoch=7"))
    assert header.startswith("# 7 steps per epoch: schedule.steps_per_epoch"), header


def test_unknown_dataset_says_so():
    out = run("data=imagenet_folder", "data.train_images=null", "trainer.epochs=4", "lr_schedule.warmup_epochs=1")
    header, rows = table(out)
    assert header.startswith("# 1 step per epoch, assumed") and len(rows) == 4
    note = out.stderr.strip()
    assert note.count("\n") == 0 and note.startswith("acdc-schedule: note: steps per epoch unknown for data.name=imagenet_folder")
    assert "schedule.steps_per_epoch=N" in note


def test_bad_settings_are_one_line_errors():
    for args, needle in [
        (["schedule.format=yaml"], "schedule.format='yaml' is not allowed; allowed: table, json"),
        (["schedule.steps_per_epoch=0"], "schedule.steps_per_epoch=0 must be > 0"),
        (["schedule.plott=x.png"], "Key 'plott' not in 'ScheduleOutputConfig'"),
        (["--json"], "--json is now the override schedule.format=json"),
    ]:
        out = run(EXP, *args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.strip().count("\n") == 0 and needle in out.stderr, (args, out.stderr)


def test_help_shows_the_groups():
    out = run("--help")
    assert out.returncode == 0 and "acdc-schedule: the plan of a training config" in out.stdout
    assert "== Configuration groups ==" in out.stdout
    assert "experiment: fashion_mnist_study, resnet50_imagenet_acdc85_quant" in out.stdout
