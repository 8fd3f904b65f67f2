"""RigL through the trainer (digits): ERK masks from the first step, a resume that starts on an
update step lands on the same weights as an uninterrupted run, the run evaluates from its files
and exports. The step itself is checked weight for weight in tests/unit/test_rigl_reference.py."""

from __future__ import annotations

import json
import math

from conftest import assert_same_final_weights, evaluate_checkpoint, load_state, train

from acdc_exp.sparsity.dynamic_masks import erk_sparsities, zeros_of

# 3 epochs of 22 steps; an update every 5 steps before T_end = int(0.75 * 66) = 49
RIGL_SHORT = ["sparsity=rigl", "trainer.epochs=3", "lr_schedule.warmup_epochs=0.5", "sparsity.sparsity=0.8", "sparsity.delta_t=5"]


def test_rigl_run_trains_resumes_across_an_update_evaluates_and_exports(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    summary = train(RIGL_SHORT + ["trainer.export_onnx=true"], full)
    assert (summary["method"], summary["mask_type"], summary["final_phase"]) == ("rigl", "unstructured", "compressed")
    assert summary["final_top1"] > 60.0 and summary["dense_top1"] is None
    final = load_state(full / "checkpoints" / "final.pt")
    assert final["step"] == 66
    masks = final["sparsifier"]["masks"]
    # each layer holds exactly its ERK share of zeros (what the start set, every update kept)
    shapes = {n: tuple(m.shape) for n, m in masks.items()}
    for n, s in erk_sparsities(shapes, 0.8).items():
        assert int((~masks[n]).sum()) == zeros_of(math.prod(shapes[n]), s), n
        assert bool((final["model"][n][~masks[n]] == 0).all()), n
    assert len({round(s, 3) for s in erk_sparsities(shapes, 0.8).values()}) > 2  # ERK, not uniform

    # stopped after step 9: the resumed process's first step (10) is an update step
    stopped = train(RIGL_SHORT + ["trainer.max_steps=10"], part)
    assert stopped["interrupted"] and stopped["step"] == 10
    train(RIGL_SHORT + ["trainer.resume=auto"], part)
    assert_same_final_weights(full, part)
    resumed = load_state(part / "checkpoints" / "final.pt")
    assert all(bool((resumed["sparsifier"]["masks"][n] == masks[n]).all()) for n in masks)

    # the run evaluates from its files, and its export holds the sparse weights
    assert evaluate_checkpoint(str(full))["top1"] == summary["final_top1"]
    report = json.loads((full / "export" / "export_report.json").read_text())
    assert report["all_ok"], report
