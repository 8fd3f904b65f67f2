"""A real ``acdc-train recipe=...`` run: its run dir is named after the recipe, and a torchvision
ResNet started from random weights says so once, at the start."""

from __future__ import annotations

import json
import textwrap

from conftest import run_cli, small_overrides

# one epoch at a constant lr, no pruning: the smallest recipe a run accepts
TINY_RECIPE = """
num_epochs: 1
modifiers:
  - !EpochRangeModifier
    start_epoch: 0
    end_epoch: eval(num_epochs)
  - !SetLearningRateModifier
    start_epoch: 0
    learning_rate: 0.01
"""


def test_recipe_run_dir_and_random_weights_notice(tmp_path):
    recipe = tmp_path / "tiny_r18.yaml"
    recipe.write_text(textwrap.dedent(TINY_RECIPE))
    runs = tmp_path / "runs"
    overrides = [o for o in small_overrides(runs) if not o.startswith("logger=")]
    proc = run_cli(
        "acdc-train",
        *overrides,
        f"recipe={recipe}",
        "model=resnet18",  # at digits' 32x32: 2 steps take seconds
        "model.pretrained=false",  # a bare .yaml recipe on a torchvision ResNet must say it
        "logger=console",
        "data.limit_train_batches=2",
        "data.limit_val_batches=1",
        "trainer.bn_recalibration_batches=0",
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    notes = [i for i, line in enumerate(lines) if "starts from random weights" in line]
    assert len(notes) == 1, proc.stdout
    assert lines[notes[0]].startswith("[model] resnet18 starts from random weights (model.pretrained=false);")
    assert notes[0] < min(i for i, line in enumerate(lines) if line.startswith("[phase]"))  # at the start

    (run,) = (runs / "tiny_r18").iterdir()  # Hydra's run dir: <runs_root>/<recipe stem>/<time>
    summary = json.loads((run / "summary.json").read_text())
    assert summary["experiment"] == "tiny_r18" and summary["steps"] == 2
