"""QATController on real models and random inputs: module swap, masks through fake quant and
int8, observer/BN freezes, regions, and resume from state dicts."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.ao.quantization as tq
from conftest import AVX2_INT8_KERNELS, int8_vs_qat
from torch import nn

from acdc_exp.errors import ConfigError
from acdc_exp.models import build_model
from acdc_exp.plan import QatStep, StepPlan
from acdc_exp.quantization.qat import QATController
from acdc_exp.sparsity.sparsifier import Sparsifier

PRUNED = ["layer*.conv*.weight", "layer*.downsample.0.weight"]


def plan(step: int, *, qat: bool = True, obs: bool = False, bn: bool = False, phase: str = "compressed") -> StepPlan:
    qat_step = QatStep(active=qat, observers_frozen=obs, bn_frozen=bn)
    return StepPlan.make(phase, 0.9, step=step, epoch=float(step), lr=0.01, qat=qat_step)


def pruned_small(seed: int = 0, sparsity: float = 0.9):
    torch.manual_seed(seed)
    model = build_model("resnet_small", width=8)
    sp = Sparsifier(model, params=PRUNED)
    sp.begin_step(StepPlan.make("compressed", sparsity, update_masks=True))
    return model, sp


def observe(model: nn.Module, n: int = 3, scale: float = 1.0, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(n):
            model(scale * torch.randn(16, 3, 32, 32, generator=gen))


def fused_qat_convs(model: nn.Module):
    return {n: m for n, m in model.named_modules() if hasattr(m, "weight_fake_quant") and hasattr(m, "bn")}


@pytest.mark.parametrize("name", ["resnet_small", "resnet18"])
def test_prepare_keeps_parameter_objects_and_pruned_weight_names(name):
    model = build_model(name)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sp = Sparsifier(model, params=PRUNED)
    before = dict(sp._params)
    ctrl = QATController()
    assert ctrl.begin_step(plan(0, qat=False), model) is False and not ctrl.prepared
    assert ctrl.begin_step(plan(1), model) is True and ctrl.prepared
    assert ctrl.begin_step(plan(2), model) is False  # swapped once
    live = {id(p) for p in model.parameters()}
    assert all(id(p) in live for g in opt.param_groups for p in g["params"])
    sp.rebind(model)
    assert sp.names and all(sp._params[n] is before[n] for n in sp.names)
    # the pruned conv sits in a fused, fake-quantizing module under its old name
    conv = model.get_submodule("layer1.0.conv1")
    assert hasattr(conv, "weight_fake_quant") and conv.weight is before["layer1.0.conv1.weight"]
    assert isinstance(model.fc, nn.Linear) and not hasattr(model.fc, "weight_fake_quant")  # classifier stays float


@pytest.mark.parametrize("per_channel", [False, True])
def test_pruned_weights_are_exact_zeros_in_fake_quant_and_int8(per_channel):
    model, sp = pruned_small()
    masks = {n: m.clone() for n, m in sp.masks.items()}
    ctrl = QATController(per_channel=per_channel)
    ctrl.prepare(model)
    observe(model)
    model.apply(tq.disable_observer)
    checked = 0
    for name, mod in fused_qat_convs(model).items():
        key = f"{name}.weight"
        if key not in masks:
            continue
        scale = mod.bn.weight / torch.sqrt(mod.bn.running_var + mod.bn.eps)
        with torch.no_grad():
            fq = mod.weight_fake_quant(mod.weight * scale.reshape(-1, 1, 1, 1))
        pruned = ~masks[key]
        assert torch.equal(fq[pruned], torch.zeros_like(fq[pruned]))  # bit-exact 0.0
        assert fq[~pruned].ne(0).float().mean() > 0.9  # the kept weights mostly survive rounding
        checked += 1
    assert checked == len(masks)
    int8 = ctrl.convert(model)
    assert int8 is not None
    for key, mask in masks.items():
        w = int8.get_submodule(key.rsplit(".", 1)[0]).weight()
        assert w.dtype == torch.qint8
        assert torch.equal(w.int_repr()[~mask], torch.zeros_like(w.int_repr()[~mask]))
        assert torch.equal(w.dequantize()[~mask], torch.zeros(int((~mask).sum())))
    # int8 model runs and tracks the fake-quant model
    x = torch.randn(8, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert (int8(x) - model(x)).abs().max() < 0.2 * model(x).abs().max()


def test_observers_freeze_then_bn_stats_freeze():
    model, _ = pruned_small()
    ctrl = QATController()
    ctrl.begin_step(plan(0), model)
    act = model.layer2[0].conv1.activation_post_process
    bn = model.layer2[0].conv1.bn
    observe(model, seed=1)
    scale0, mean0 = act.scale.clone(), bn.running_mean.clone()
    observe(model, scale=3.0, seed=2)
    assert not torch.equal(act.scale, scale0)  # observers follow the data
    assert not torch.equal(bn.running_mean, mean0)
    ctrl.begin_step(plan(1, obs=True), model)
    assert all(int(m.observer_enabled[0]) == 0 for m in model.modules() if isinstance(m, tq.FakeQuantize))
    assert all(int(m.fake_quant_enabled[0]) == 1 for m in model.modules() if isinstance(m, tq.FakeQuantize))
    scale1, mean1 = act.scale.clone(), bn.running_mean.clone()
    observe(model, scale=5.0, seed=3)
    assert torch.equal(act.scale, scale1)  # frozen
    assert not torch.equal(bn.running_mean, mean1)  # BN still tracks
    ctrl.begin_step(plan(2, obs=True, bn=True), model)
    mean2 = bn.running_mean.clone()
    model.train()  # the trainer flips train/eval around evaluations: the freeze must survive it
    observe(model, scale=7.0, seed=4)
    assert torch.equal(bn.running_mean, mean2)
    assert all(m.freeze_bn for m in fused_qat_convs(model).values())


def test_unfused_bn_freeze_stops_running_stats():
    torch.manual_seed(0)
    model = build_model("resnet_small", width=8)
    ctrl = QATController(fuse=False)
    ctrl.begin_step(plan(0, obs=True, bn=True), model)
    assert isinstance(model.layer1[0].bn1, nn.BatchNorm2d)
    mean = model.layer1[0].bn1.running_mean.clone()
    observe(model, scale=4.0)
    assert torch.equal(model.layer1[0].bn1.running_mean, mean)
    int8 = ctrl.convert(model)
    with torch.no_grad():
        assert torch.isfinite(int8(torch.randn(2, 3, 32, 32))).all()


@pytest.mark.parametrize("regions, int8_stem, int8_layers", [(["sections"], False, True), (["input"], True, False)])
def test_quantized_regions(regions, int8_stem, int8_layers):
    model, sp = pruned_small()
    ctrl = QATController(submodules=regions)
    ctrl.prepare(model)
    sp.rebind(model)  # names survive whichever region is fused
    observe(model)
    int8 = ctrl.convert(model)
    assert hasattr(int8.conv1, "scale") == int8_stem
    assert hasattr(int8.layer2[0].conv2, "scale") == int8_layers
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert (int8(x) - model(x)).abs().max() < 0.2 * model(x).abs().max()


@pytest.mark.parametrize(
    "kwargs, match",
    [({"submodules": ["classifier"]}, "submodules"), ({"backend": "tpu"}, "backend"), ({"num_bits": 4}, "num_bits")],
)
def test_bad_quantization_settings_are_one_line_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match) as err:
        QATController(**kwargs)
    assert "\n" not in str(err.value) and "allowed" in str(err.value)


def _train_steps(model, opt, sp, ctrl, steps, start):
    gen = torch.Generator().manual_seed(100 + start)
    for s in range(start, start + steps):
        ctrl.begin_step(plan(s, obs=s >= 4, bn=s >= 6), model)
        x, y = torch.randn(8, 3, 32, 32, generator=gen), torch.randint(0, 10, (8,), generator=gen)
        model.train()
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        sp.mask_gradients()
        opt.step()
        sp.end_step()


def _fresh(seed: int = 0):
    model, sp = pruned_small(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    sp.attach_optimizer(opt)
    return model, opt, sp, QATController()


@pytest.mark.parametrize("stop", [3, 7])  # before the observer (4) and BN (6) freezes, and after both
def test_resume_from_state_dicts_taken_during_qat_matches_uninterrupted(stop):
    model, opt, sp, ctrl = _fresh()
    _train_steps(model, opt, sp, ctrl, stop, 0)
    snap = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict(), "q": ctrl.state_dict(), "sp": sp.state_dict()})
    _train_steps(model, opt, sp, ctrl, 3, stop)

    # a new process: the float model and its optimizer, then the trainer's resume order
    model2, opt2, sp2, ctrl2 = _fresh(seed=1)  # other initial weights: everything must come from the state
    assert snap["q"]["prepared"]
    ctrl2.prepare(model2)
    sp2.rebind(model2)
    ctrl2.load_state_dict(snap["q"])
    model2.load_state_dict(snap["model"])
    opt2.load_state_dict(snap["opt"])
    sp2.load_state_dict(snap["sp"])
    _train_steps(model2, opt2, sp2, ctrl2, 3, stop)
    a, b = model.state_dict(), model2.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_model_without_quant_stubs_is_rejected_at_build_time():
    from acdc_exp.config.compose import compose_config

    cfg = compose_config(["quantization=qat"]).quantization
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ConfigError, match="no quant/dequant stub"):
        QATController.from_config(cfg, plain)
    assert QATController.from_config(cfg, build_model("resnet_small")).prepared is False


@pytest.mark.parametrize("reduce_range", [False, True])
def test_8bit_activations_saturate_int8_kernels_without_vnni(reduce_range):
    """The cause of int8 != QAT on CPUs without VNNI: AVX2 int8 kernels sum pairs of u8 x s8
    products in int16, which 8-bit activations overflow and 7-bit ones (reduce_range) cannot."""
    r = int8_vs_qat(["synthetic", str(int(reduce_range))], AVX2_INT8_KERNELS)
    worst = max(row["frac_over_one_step"] for row in r["layers"])
    if reduce_range:
        assert worst < 0.001 and r["backend_exact_on_this_cpu"] and r["int8_engine"] == "x86"
    else:
        assert worst > 0.01  # saturated outputs, many steps off
        # the env override is seen: the run would not score with these kernels
        assert not r["backend_exact_on_this_cpu"] and r["int8_engine"] == "qnnpack"


@pytest.mark.parametrize("per_channel", [False, True])
def test_int8_model_uses_the_qparams_qat_trained_with(per_channel):
    """7-bit activations (no kernel can saturate): every int8 layer within one step of the
    fake-quantized model. torch's fused kernel and its observer's calculate_qparams (which
    convert calls) disagree on scales, which would put whole layers a step or more off."""
    from acdc_exp.quantization.compare import compare_int8_to_fake_quant

    model, _ = pruned_small()
    ctrl = QATController(per_channel=per_channel, reduce_range=True)
    ctrl.prepare(model)
    observe(model)
    model.apply(tq.disable_observer)
    r = compare_int8_to_fake_quant(model, ctrl.convert(model), torch.randn(16, 3, 32, 32))
    assert max(row["frac_over_one_step"] for row in r["layers"]) < 0.001
    # symmetric weights on every channel, pruned-empty and one-signed ones included
    assert all(int(m.weight_fake_quant.zero_point.abs().max()) == 0 for m in fused_qat_convs(model).values())


def test_qat_state_dict_keys_are_torch_fake_quantize_keys():
    """The fused fake quantizers keep FakeQuantize's buffers: checkpoints keep their keys."""
    plain = tq.QConfig(
        activation=tq.FakeQuantize.with_args(observer=tq.MovingAverageMinMaxObserver, quant_min=0, quant_max=255),
        weight=tq.FakeQuantize.with_args(observer=tq.MovingAverageMinMaxObserver, dtype=torch.qint8),
    )
    keys = []
    for qconfig in (None, plain):
        model = build_model("resnet_small", width=8)
        ctrl = QATController()
        ctrl.qconfig = qconfig or ctrl.qconfig
        ctrl.prepare(model)
        keys.append(list(model.state_dict()))
    assert keys[0] == keys[1]
