"""Synced BatchNorm (acdc_exp.models.sync_bn): the trainer.sync_batchnorm rule, module
round trips that keep parameters and checkpoints, the QAT fuse/prepare/convert path, and two
gloo ranks under torchrun that train like one process on the whole batch."""

from __future__ import annotations

import copy
import os
import subprocess

import pytest
import sync_bn_worker as worker
import torch
import torch.ao.quantization as tq
from conftest import REPO, SUPPORT, cli
from torch import nn

from acdc_exp.errors import ConfigError
from acdc_exp.models import build_model
from acdc_exp.models.sync_bn import (
    SYNC_BN_BATCH_THRESHOLD,
    SyncBatchNorm1d,
    SyncBatchNorm2d,
    SyncBatchNorm3d,
    from_sync_batchnorm,
    has_sync_batchnorm,
    sync_batchnorm_wanted,
    to_sync_batchnorm,
)
from acdc_exp.quantization.qat import QATController, freeze_bn_stats
from acdc_exp.training.bn_recalibration import recalibrate_batchnorm

PLAIN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

# --- trainer.sync_batchnorm -----------------------------------------------------------------


@pytest.mark.parametrize(
    "setting, batch, world, want",
    [
        ("auto", 8, 32, True),
        ("auto", SYNC_BN_BATCH_THRESHOLD - 1, 2, True),
        ("auto", SYNC_BN_BATCH_THRESHOLD, 2, False),
        ("auto", 8, 1, False),  # one process: nothing to sync
        ("true", 256, 2, True),
        (True, 256, 2, True),
        ("true", 8, 1, False),
        (True, 8, 1, False),
        ("false", 8, 32, False),
        (False, 8, 32, False),
        ("True", 64, 2, True),  # a command-line override of the str field: trainer.sync_batchnorm=true
        ("False", 8, 2, False),
    ],
)
def test_sync_batchnorm_wanted_rule(setting, batch, world, want):
    assert sync_batchnorm_wanted(setting, batch, world) is want


@pytest.mark.parametrize("bad", ["on", "yes", "", None, 1])
def test_sync_batchnorm_wanted_rejects_other_values_in_one_line(bad):
    with pytest.raises(ConfigError) as err:
        sync_batchnorm_wanted(bad, 8, 1)  # checked even where it would have no effect
    msg = str(err.value)
    assert "\n" not in msg and f"trainer.sync_batchnorm={bad!r}" in msg and "allowed: auto, true, false" in msg


# --- conversion -----------------------------------------------------------------------------


def _mixed_net() -> nn.Module:
    torch.manual_seed(0)
    shared = nn.BatchNorm1d(6)
    return nn.Sequential(
        nn.Conv3d(2, 3, 1),
        nn.BatchNorm3d(3, momentum=None),
        nn.Flatten(2),
        nn.Conv1d(3, 6, 1),
        shared,
        nn.Sequential(nn.Conv1d(6, 6, 1), shared),  # one module under two parents
        nn.Flatten(1),
        nn.LazyLinear(4),
        nn.BatchNorm1d(4, affine=False),
        nn.Linear(4, 4),
        nn.BatchNorm1d(4, bias=False),
    )


def test_round_trip_keeps_parameters_buffers_mode_hooks_and_state_dict():
    net = _mixed_net()
    net(torch.randn(5, 2, 2, 2, 2))  # materialize the lazy layer and move the running stats
    net[4].eval()  # a mixed-mode model keeps each module's mode
    calls = []
    handle = net[8].register_forward_hook(lambda *_: calls.append(1))
    params = [id(p) for p in net.parameters()]
    buffers = [id(b) for b in net.buffers()]
    state = copy.deepcopy(net.state_dict())
    modes = [m.training for m in net.modules()]

    assert to_sync_batchnorm(net) is net and has_sync_batchnorm(net)
    assert [type(m) for m in (net[1], net[4], net[8], net[10])] == [SyncBatchNorm3d] + [SyncBatchNorm1d] * 3
    assert net[5][1] is net[4]  # still shared
    assert not any(type(m) in PLAIN for m in net.modules())
    for after in (net, from_sync_batchnorm(net)):
        assert [id(p) for p in after.parameters()] == params and [id(b) for b in after.buffers()] == buffers
        assert [m.training for m in after.modules()] == modes
        got = after.state_dict()
        assert list(got) == list(state) and all(torch.equal(got[k], state[k]) for k in state)
    assert [type(m) for m in (net[1], net[4], net[8], net[10])] == [nn.BatchNorm3d] + [nn.BatchNorm1d] * 3
    assert not has_sync_batchnorm(net) and not any(hasattr(m, "process_group") for m in net.modules())
    net(torch.randn(5, 2, 2, 2, 2))
    handle.remove()  # the handle still reaches the hook after two swaps
    net(torch.randn(5, 2, 2, 2, 2))
    assert len(calls) == 1


def test_a_batchnorm_model_is_returned_converted_and_loads_plain_checkpoints():
    bn = nn.BatchNorm2d(3)
    synced = to_sync_batchnorm(bn)
    assert type(synced) is SyncBatchNorm2d and synced.weight is bn.weight and synced.running_var is bn.running_var
    assert type(from_sync_batchnorm(synced)) is nn.BatchNorm2d
    other = nn.BatchNorm2d(3)
    nn.init.uniform_(other.weight)
    other.running_mean.fill_(0.5)
    synced.load_state_dict(other.state_dict())  # checkpoints load both ways
    assert torch.equal(synced.weight, other.weight) and torch.equal(bn.running_mean, other.running_mean)


def test_without_a_process_group_synced_is_plain_batchnorm():
    """One process (no torch.distributed): the same outputs, gradients and statistics."""
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(4, momentum=None)
    synced = to_sync_batchnorm(copy.deepcopy(plain))
    x = 3.0 + torch.randn(6, 4, 3, 3)
    for mode in (True, True, False):
        plain.train(mode), synced.train(mode)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        a, b = plain(xa), synced(xb)
        a.square().sum().backward(), b.square().sum().backward()
        assert torch.equal(a, b) and torch.equal(xa.grad, xb.grad)
    assert all(torch.equal(u, v) for u, v in zip(plain.state_dict().values(), synced.state_dict().values()))


def test_cuda_path_runs_torchs_syncbatchnorm_forward_on_these_modules():
    """On CUDA the module calls ``nn.SyncBatchNorm.forward`` with itself: without a process
    group that forward is BatchNorm, so on CPU it shows every attribute it reads exists."""
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(4)
    synced = to_sync_batchnorm(copy.deepcopy(plain))
    x = torch.randn(6, 4, 3, 3)
    assert torch.equal(nn.SyncBatchNorm.forward(synced, x), plain(x))
    assert torch.equal(synced.running_var, plain.running_var) and synced.num_batches_tracked.item() == 1


def test_torch_fuser_needs_plain_batchnorm():
    net = to_sync_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))
    with pytest.raises(AssertionError, match="did not find fuser method"):
        tq.fuse_modules_qat(net, [["0", "1", "2"]])
    tq.fuse_modules_qat(from_sync_batchnorm(net), [["0", "1", "2"]], inplace=True)


# --- the QAT path on one process ------------------------------------------------------------


def _images(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fuse", [True, False])
def test_qat_prepare_resync_freeze_and_int8_convert(fuse):
    """plain -> to_sync -> train -> QAT prepare (unsyncs, fuses, syncs again) -> train ->
    freeze -> int8 convert (of a plain copy): the same as the model that never was synced."""
    torch.manual_seed(0)
    ref = build_model("resnet_small", width=8)
    model = to_sync_batchnorm(copy.deepcopy(ref))
    params = {id(p) for p in model.parameters()}  # names change with fusion, objects do not
    int8 = {}
    for net in (ref, model):
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        net.train()
        net(_images()).sum().backward()
        opt.step()
        ctrl = QATController(fuse=fuse)
        ctrl.prepare(net)  # unsyncs for torch.ao's fusion and syncs the fused BNs again
        opt.zero_grad()
        net(_images(seed=1)).sum().backward()
        opt.step()
        net.apply(tq.disable_observer)
        freeze_bn_stats(net)
        net.train()
        net(_images(seed=2))  # frozen: running stats stay, fused ConvBn uses them
        net.eval()
        int8[net is model] = ctrl.convert(net)  # converts a plain copy

    bns = {n: type(m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    assert bns and set(bns.values()) == {SyncBatchNorm2d}
    if fuse:  # the BN inside torch.ao's fused QAT ConvBn(ReLU)2d is synced again
        assert all(n.endswith(".bn") for n in bns)
        assert isinstance(model.layer1[0].conv1, torch.ao.nn.intrinsic.qat.ConvBnReLU2d)
        assert model.layer1[0].conv1.freeze_bn and not model.layer1[0].conv1.bn.training
    else:  # unfused BNs keep the observer prepare_qat attached, hook included
        assert model.layer1[0].bn1._forward_hooks and hasattr(model.layer1[0].bn1, "activation_post_process")
    assert {id(p) for p in model.parameters()} == params
    assert has_sync_batchnorm(model) and not has_sync_batchnorm(int8[True])
    want, got = ref.state_dict(), model.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
    x = _images(4, seed=3)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
        assert torch.equal(int8[True](x), int8[False](x))


def test_recalibration_sees_synced_batchnorms():
    torch.manual_seed(0)
    model = to_sync_batchnorm(build_model("resnet_small", width=4))
    before = model.bn1.running_mean.clone()
    assert recalibrate_batchnorm(model, [_images(4)], lambda x: x) == 1
    assert not torch.equal(model.bn1.running_mean, before)


# --- two gloo ranks -------------------------------------------------------------------------


def test_two_gloo_ranks_train_like_one_process_on_the_whole_batch(tmp_path):
    proc = subprocess.run(
        [cli("torchrun"), "--standalone", "--nproc_per_node=2", str(SUPPORT / "sync_bn_worker.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    images, labels = worker.global_batch()
    whole = worker.reference(images, labels)
    half = worker.reference(images[:4], labels[:4])

    # the fused QAT ConvBn modules were synced again after prepare
    assert len(ranks[0]["fused_synced_bns"]) == 9
    want = whole["model"]
    stats = [k for k in want if k.endswith(("running_mean", "running_var"))]
    assert len(stats) == 18
    for k, v in want.items():
        a, b = ranks[0]["model"][k], ranks[1]["model"][k]
        assert torch.equal(a, b), k  # no buffer broadcast: equal only because BN synced
        assert torch.allclose(a, v, rtol=1e-5, atol=1e-6), k  # BN stats and weights alike
    # the tolerance is far tighter than what per-rank statistics would give
    assert all((half["model"][k] - want[k]).abs().max() > 1e-3 for k in stats)

    # BatchNorm1d on (N, C, L), momentum None, ranks holding 3 and 5 of the 8 samples
    got, ref = [r["bn1d"] for r in ranks], whole["bn1d"]
    for k, v in ref["bn"].items():
        assert torch.allclose(got[0]["bn"][k], v, rtol=1e-5, atol=1e-6) and torch.equal(got[0]["bn"][k], got[1]["bn"][k]), k
    for k in ("out", "x_grad"):
        assert torch.allclose(torch.cat([got[0][k], got[1][k]]), ref[k], rtol=1e-5, atol=1e-6), k
    # each rank holds the gradient of its own loss; DDP would sum (here: add) them
    assert torch.allclose(got[0]["weight_grad"] + got[1]["weight_grad"], ref["weight_grad"], rtol=1e-5, atol=1e-6)
