"""torch.compile of a QAT model: one graph, no graph break, and a recompile only where BN
statistics freeze; observer switches and the trainer's evaluation pauses need none. Dynamo
only (backend="eager"): the graph capture is what this checks, in seconds; inductor on CPU
takes a minute a graph."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from acdc_exp.models import build_model
from acdc_exp.quantization.qat import QATController
from acdc_exp.quantization.qconfig import quiet_ao
from acdc_exp.training.metrics import evaluate


@pytest.mark.parametrize("per_channel", [False, True])
def test_compiled_qat_steps_capture_one_graph_across_the_freezes(per_channel):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    models = []
    for _ in range(2):  # an eager twin and the compiled one, from the same weights
        torch.manual_seed(0)
        model = build_model("resnet_small", width=8)
        ctrl = QATController(per_channel=per_channel)
        ctrl.prepare(model)
        models.append((model, ctrl, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)))
    compiled = torch.compile(models[1][0], backend="eager")
    gen = torch.Generator().manual_seed(1)
    with quiet_ao():
        for step in range(8):
            x, y = torch.randn(8, 3, 32, 32, generator=gen), torch.randint(0, 10, (8,), generator=gen)
            losses = []
            for (model, ctrl, opt), fwd in zip(models, (models[0][0], compiled)):
                ctrl.apply_freezes(model, observers_frozen=step >= 3, bn_frozen=step >= 5)
                model.train()
                opt.zero_grad()
                loss = nn.functional.cross_entropy(fwd(x), y)
                loss.backward()
                opt.step()
                losses.append(loss.item())
                if step in (2, 4):  # the trainer evaluates the plain model: flags paused, restored
                    evaluate(model, [(x, y)], lambda v: v, torch.device("cpu"))
            assert losses[0] == pytest.approx(losses[1], rel=1e-4, abs=1e-5), step
    assert not counters["graph_break"], dict(counters["graph_break"])
    # the first graph, and one more for the BN freeze (a Python flag on each fused conv)
    assert counters["stats"]["unique_graphs"] == 2
