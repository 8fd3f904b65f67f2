"""acdc-schedule: the plan of any experiment, without training, as table, JSON trace or PNG."""

from __future__ import annotations

import json
import subprocess

from conftest import cli

EXP = "experiment=resnet50_imagenet_acdc85_quant"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([cli("acdc-schedule"), *args], capture_output=True, text=True, timeout=120)


def test_table_shows_the_206_epoch_plan():
    out = run(EXP)
    assert out.returncode == 0, out.stderr
    rows = {int(line.split()[0]): line.split() for line in out.stdout.splitlines()[1:]}
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


def test_bad_settings_are_one_line_errors():
    for args, needle in [
        (["schedule.format=json"], "schedule.format=json needs schedule.steps_per_epoch=N"),
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
    assert "== Configuration groups ==" in out.stdout and "experiment: resnet50_imagenet_acdc85_quant" in out.stdout
