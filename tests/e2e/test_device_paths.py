"""The paths the reference job takes on GPUs, run where they can run here (CPU): AMP modes
(bf16 autocast, fp16 with a GradScaler), channels_last with masks and QAT, resuming across an
AMP change, determinism flags, and evaluation that leaves the model as it found it."""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.ao.quantization as tq
from conftest import load_state, train

from acdc_exp.errors import ConfigError
from acdc_exp.models import build_model
from acdc_exp.plan import StepPlan
from acdc_exp.quantization.qat import QATController
from acdc_exp.sparsity.sparsifier import Sparsifier
from acdc_exp.training.metrics import evaluate
from acdc_exp.training.precision import AMP_MODES, CUBLAS_WORKSPACE, configure_determinism, resolve_precision

CPU = torch.device("cpu")
# 4 epochs of 12 batches: dense [0,1), compressed from 1 at 80% (block4), QAT from 3
SHORT_QAT = [
    "trainer.epochs=4",
    "data.limit_train_batches=12",
    "data.limit_val_batches=1",
    "lr_schedule.warmup_epochs=0.5",
    "lr_schedule.peak_lr=0.1",
    "sparsity.start_epoch=0",
    "sparsity.end_epoch=2",
    "sparsity.update_frequency=1",
    "sparsity.sparsity=0.8",
    "sparsity.mask_type=block4",
    "quantization=qat",
    "quantization.start_epoch=3",
    "quantization.disable_observer_epoch=3.5",
    "quantization.freeze_bn_stats_epoch=3.75",
]


def test_amp_modes_resolve_per_device():
    cuda = torch.device("cuda")
    assert resolve_precision("auto", CPU).dtype is None and resolve_precision("auto", cuda).dtype is torch.float16
    assert resolve_precision("bf16", CPU).dtype is torch.bfloat16
    assert not resolve_precision("bf16", CPU).grad_scaler().is_enabled()  # bf16 needs no loss scaling
    assert resolve_precision("fp16", CPU).grad_scaler().is_enabled()
    assert resolve_precision(True, CPU).name == "off" and resolve_precision(False, cuda).name == "off"
    with pytest.raises(ConfigError) as exc:
        resolve_precision("fp8", CPU)
    assert str(exc.value) == f"trainer.amp='fp8' is unknown; allowed: {', '.join(AMP_MODES)}"


def _assert_learned_with_block4_masks(s: dict, run_dir, channels_last: bool) -> None:
    assert s["final_phase"] == "qat" and s["sparse_int8_top1"] > 50.0  # ~70 after 48 steps
    assert abs(s["sparse_int8_top1"] - s["qat_top1"]) <= 2.0
    final = load_state(run_dir / "checkpoints" / "final.pt")
    masks = final["sparsifier"]["masks"]
    assert masks
    for name, mask in masks.items():
        w = final["model"][name]
        if w.shape[-1] > 1:  # a 1x1 kernel's layout is both NCHW and NHWC
            assert w.is_contiguous(memory_format=torch.channels_last) == channels_last
        assert torch.equal(w[~mask], torch.zeros(int((~mask).sum())))  # block4 masks hold through it
        # block4: every block of 4 input channels is kept or pruned whole
        blocks = mask.permute(0, 2, 3, 1).reshape(-1, 4)
        assert bool((blocks.all(1) | ~blocks.any(1)).all())
    assert abs(s["sparsity_pruned_layers"] - 0.8) < 0.01


def test_bf16_channels_last_acdc_qat_run_on_cpu(run_dir):
    s = train(SHORT_QAT + ["trainer.amp=bf16", "trainer.channels_last=true", "trainer.export_onnx=true"], run_dir)
    assert (s["amp_dtype"], s["channels_last"], s["compiled"]) == ("bf16", True, False)
    _assert_learned_with_block4_masks(s, run_dir, channels_last=True)  # the model really trained NHWC
    assert s["onnx"]["all_ok"] is True  # and exports (checked in onnxruntime) like an NCHW one


@pytest.mark.parametrize("mask_type", ["block4", "2:4", "unstructured"])
def test_masks_of_a_channels_last_model_equal_those_of_its_nchw_twin(mask_type):
    """Masks index weights logically, so the memory format must not change which are pruned."""
    torch.manual_seed(0)
    nchw = build_model(name="resnet_small", num_classes=10)
    nhwc = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    params = ["layer*.conv*.weight"]
    plan = StepPlan.make("compressed", 0.5, update_masks=True)
    masks = []
    for model in (nchw, nhwc):
        sparsifier = Sparsifier(model, params=params, mask_type=mask_type)
        sparsifier.begin_step(plan)
        masks.append(sparsifier.masks)
    assert masks[0].keys() == masks[1].keys() and masks[0]
    for name in masks[0]:
        assert torch.equal(masks[0][name], masks[1][name]), name
        assert torch.equal(nchw.get_parameter(name), nhwc.get_parameter(name)), name  # pruned alike


def test_compiled_acdc_qat_run(run_dir):
    """torch.compile through a dense phase, compressed phases (masks changing weights in place)
    and the QAT module swap (a fresh compile of the new modules)."""
    s = train(SHORT_QAT + ["trainer.compile=true"], run_dir)
    assert s["compiled"] and s["amp_dtype"] == "off"
    _assert_learned_with_block4_masks(s, run_dir, channels_last=False)


@pytest.mark.parametrize("first, then", [("off", "fp16"), ("fp16", "off"), ("bf16", "fp16")])
def test_resume_across_an_amp_change(tmp_path, first, then):
    run = tmp_path / "run"
    common = [
        "trainer.epochs=2",
        "data.limit_train_batches=4",
        "data.limit_val_batches=1",
        "lr_schedule.warmup_epochs=0.5",
        "sparsity.start_epoch=0",
        "sparsity.end_epoch=1",
        "sparsity.update_frequency=1",
    ]
    train(common + [f"trainer.amp={first}", "trainer.max_steps=5"], run)
    scaler = load_state(run / "checkpoints" / "last.pt")["scaler"]
    assert bool(scaler) == (first == "fp16")  # a disabled scaler saves nothing
    s = train(common + [f"trainer.amp={then}", "trainer.resume=auto"], run)
    assert s["amp_dtype"] == then and s["steps"] == 8 and s["resumed_at_steps"] == [5]
    if then == "fp16":
        assert load_state(run / "checkpoints" / "last.pt")["scaler"]["scale"] > 0


def test_evaluation_changes_no_model_state():
    """Observers observe in eval mode too: without care, validation images would move the
    quantization ranges of a run evaluated before its observers freeze."""
    torch.manual_seed(0)
    model = build_model(name="resnet_small", num_classes=10)
    QATController().prepare(model)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))  # observers have seen training data
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [(torch.randn(16, 3, 32, 32) * 3, torch.randint(0, 10, (16,))) for _ in range(2)]
    metrics = evaluate(model, batches, lambda x: x, CPU)
    assert metrics["samples"] == 32
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []
    assert model.training  # and the mode is restored
    flags = [m.observer_enabled for m in model.modules() if isinstance(m, tq.FakeQuantize)]
    assert flags and all(int(f[0]) == 1 for f in flags)  # observers still on for training


def test_determinism_flags(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    try:
        configure_determinism(True, CPU)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(False)
        configure_determinism(False, torch.device("cuda"))
        assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[:2]
        torch.use_deterministic_algorithms(saved[2])
