"""2:4 (N:M) masks through the trainer: training keeps the pattern, a resume mid compressed
phase is bit-identical to an uninterrupted run, and the ONNX export carries the pattern."""

from __future__ import annotations

import json

import numpy as np
import onnx
from conftest import assert_same_final_weights, load_state, train

from acdc_exp.deploy.onnx_graph import initializers

# dense [0,1), compressed [1,2) (masks recomputed at end_epoch 2), compressed to the end
NM_SHORT = [
    "trainer.epochs=3",
    "lr_schedule.warmup_epochs=0.5",
    "sparsity.start_epoch=0",
    "sparsity.end_epoch=2",
    "sparsity.update_frequency=1",
    "sparsity.mask_type=2:4",
    "sparsity.sparsity=0.5",
]


def groups_of_4(w: np.ndarray) -> np.ndarray:
    """(groups, 4): consecutive input channels at each (out, kh, kw) position, as N:M groups them."""
    return np.moveaxis(w, 1, -1).reshape(-1, 4)


def test_two_four_run_trains_resumes_and_exports(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    summary = train(NM_SHORT + ["trainer.export_onnx=true"], full)
    assert summary["final_phase"] == "compressed" and summary["final_top1"] > 60.0
    assert abs(summary["sparsity_pruned_layers"] - 0.5) < 1e-9
    final = load_state(full / "checkpoints" / "final.pt")
    names = list(final["sparsifier"]["names"])
    assert len(names) >= 6
    for n in names:
        nonzero = (groups_of_4(final["model"][n].numpy()) != 0).sum(axis=1)
        assert nonzero.max() == 2, n  # at most 2 of every 4, and the pattern is filled

    # stop inside the compressed phase [1, 2), resume, and land on the same weights
    spe = final["step"] // 3
    stopped = train(NM_SHORT + [f"trainer.max_steps={spe + spe // 2}"], part)
    assert stopped["interrupted"]
    assert load_state(part / "checkpoints" / "last.pt")["sparsifier"]["masks"]
    train(NM_SHORT + ["trainer.resume=auto"], part)
    assert_same_final_weights(full, part)

    # the fp32 export holds the trained 2:4 weights
    report = json.loads((full / "export" / "export_report.json").read_text())
    assert report["all_ok"]
    proto = onnx.load(next(f["path"] for f in report["files"] if f["path"].endswith("final_fp32.onnx")))
    convs = {k: v for k, v in initializers(proto).items() if v.ndim == 4 and v.shape[1] % 4 == 0}
    patterned = [k for k, v in convs.items() if ((groups_of_4(v) != 0).sum(axis=1) <= 2).all()]
    assert len(patterned) == len(names), (sorted(patterned), names)
    pruned_total = sum(final["model"][n].numel() for n in names)
    assert sum(int((convs[k] == 0).sum()) for k in patterned) == pruned_total // 2
