"""BatchNorm recalibration: running statistics become the plain average over the given
batches, weights and modes stay as they were, and a trainer run uses it before evaluations."""

from __future__ import annotations

import torch
from torch import nn

from acdc_exp.training.bn_recalibration import RecentBatches, recalibrate_batchnorm
from acdc_exp.training.summary import phase_dips


def test_running_stats_become_the_average_over_the_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    model.eval()
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    batches = [torch.randn(8, 3, 6, 6) * (i + 1) for i in range(3)]
    used = recalibrate_batchnorm(model, batches, lambda x: x)
    assert used == 3
    bn = model[1]
    with torch.no_grad():
        outs = [model[0](x) for x in batches]
    means = torch.stack([o.mean(dim=(0, 2, 3)) for o in outs])
    vars_ = torch.stack([o.var(dim=(0, 2, 3), unbiased=True) for o in outs])
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-6)
    assert torch.allclose(bn.running_var, vars_.mean(0), rtol=1e-5)
    assert bn.momentum == 0.1 and not model.training  # restored
    for k, v in weights.items():
        assert torch.equal(model.state_dict()[k], v)
    assert recalibrate_batchnorm(model, [], lambda x: x) == 0


def test_recent_batches_keep_the_last_n_as_copies():
    recent = RecentBatches(2)
    xs = [torch.full((1,), float(i)) for i in range(3)]
    for x in xs:
        recent.add(x)
    xs[2].fill_(99.0)  # a loader refilling its buffer must not change what was kept
    assert [float(b) for b in recent.batches] == [1.0, 2.0] and len(recent) == 2
    recent.clear()
    assert len(recent) == 0
    off = RecentBatches(0)
    off.add(xs[0])
    assert len(off) == 0


def test_phase_dips_definition():
    history = [
        (1, "dense", 90.0),
        (2, "compressed", 95.0),
        (3, "compressed", 96.0),
        (4, "dense", 80.0),
        (5, "dense", 97.0),
        (6, "compressed", 97.0),
        (7, "compressed", 94.0),
        (8, "dense", 99.0),
    ]
    assert phase_dips(history) == {"dense_phase_dip": 16.0, "compressed_phase_drop": 3.0}
    assert phase_dips([(1, "dense", 50.0)]) == {"dense_phase_dip": None, "compressed_phase_drop": None}
    rising = [(1, "compressed", 90.0), (2, "compressed", 95.0), (3, "dense", 96.0)]
    assert phase_dips(rising) == {"dense_phase_dip": 0.0, "compressed_phase_drop": 0.0}
