"""Compute accounting (training/compute.py) against hand counts on a tiny model."""

from __future__ import annotations

import pytest
from torch import nn

from acdc_exp.config.compose import compose_config, finalize
from acdc_exp.plan import Plan
from acdc_exp.training.compute import layer_macs, run_compute


def _tiny() -> nn.Module:
    # conv 3 -> 4, 3x3, padding 1, at 8x8: 8*8*4*27 = 6912 multiply-adds; linear 256 -> 10: 2560
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


def test_layer_macs_by_hand() -> None:
    assert layer_macs(_tiny(), 8) == {"0.weight": 6912, "2.weight": 2560}


def test_gmp_training_flops_follow_the_ramp() -> None:
    """GMP over 4 epochs of 2 steps: dense in epoch 0, masks at epochs 1, 2, 3 (cubic ramp from
    0 to 0.5 at end_epoch 3); each step costs 3 forwards at the sparsity in force."""
    cfg = finalize(
        compose_config(
            [
                "sparsity=gmp",
                "trainer.epochs=4",
                "sparsity.sparsity=0.5",
                "sparsity.init_sparsity=0.0",
                "sparsity.start_epoch=1",
                "sparsity.end_epoch=3",
                "sparsity.update_frequency=1",
            ]
        )
    )
    plan = Plan.from_config(cfg, steps_per_epoch=2)
    in_force = [plan.at(s).masks.sparsity for s in range(plan.total_steps)]
    # cubic ramp s_f + (s_i - s_f)(1 - t)^3 at t = 0, 0.5, 1 of the [1, 3] window
    assert in_force == pytest.approx([0, 0, 0, 0, 0.4375, 0.4375, 0.5, 0.5])
    layer_sparsity = {"0.weight": 0.5}  # the final masks: only the conv is pruned
    out = run_compute(_tiny(), plan, lambda epoch: 8, 8, layer_sparsity, 0.5, global_batch=10, steps=plan.total_steps)
    conv, fc = 6912, 2560
    assert out["inference_flops_dense"] == 2 * (conv + fc)
    assert out["inference_flops"] == 2 * (conv * 0.5 + fc)
    per_step = [2 * (conv * (1 - s) + fc) for s in in_force]
    assert out["training_flops"] == pytest.approx(3 * 10 * sum(per_step))
    assert out["training_flops_ratio"] == pytest.approx(sum(per_step) / (8 * 2 * (conv + fc)))


def test_rigl_update_steps_count_the_dense_weight_gradient() -> None:
    """RigL at 0.5 over 2 epochs of 5 steps, an update every 2 steps before T_end = 7: steps 0,
    2, 4, 6 cost 2 sparse forwards and 1 dense (the dense gradient), the others 3 sparse; SET's
    random grow reads no gradient, so all its steps are sparse."""
    overrides = ["sparsity=rigl", "trainer.epochs=2", "sparsity.sparsity=0.5", "sparsity.delta_t=2", "sparsity.end_fraction=0.75"]
    conv, fc = 6912, 2560
    sparse, dense = 2 * (conv * 0.5 + fc), 2 * (conv + fc)
    for grow, dense_steps in (("gradient", 4), ("random", 0)):
        plan = Plan.from_config(finalize(compose_config([*overrides, f"sparsity.grow={grow}"])), steps_per_epoch=5)
        assert [s for s in range(10) if plan.at(s).masks.update] == [0, 2, 4, 6]
        assert sum(plan.at(s).masks.dense_gradient for s in range(10)) == dense_steps
        out = run_compute(_tiny(), plan, lambda epoch: 8, 8, {"0.weight": 0.5}, 0.5, global_batch=10, steps=10)
        expected = dense_steps * (2 * sparse + dense) + (10 - dense_steps) * 3 * sparse
        assert out["training_flops"] == pytest.approx(10 * expected)
        assert out["training_flops_ratio"] == pytest.approx(expected / (10 * 3 * dense))
