"""RigL against a transcription of the authors' public code (google-research/rigl), weight for
weight: the ERK per-layer sparsities (``sparse_utils.get_sparsities_erdos_renyi``), and whole
training runs of a tiny conv net over several mask updates (``sparse_optimizers.py``:
``SparseRigLOptimizer`` and ``SparseSETOptimizer._get_update_op``, the drop fraction's TF cosine
decay, the update that replaces the optimizer step).

The transcription keeps the reference's representation, raw weights and a separate 0/1 mask,
the forward pass on ``weights * mask``, and does its sorting in NumPy; the project zeroes pruned
weights in place. Both must agree on every mask and every effective weight, at every step.
Three documented departures are transcribed as the project makes them: no N(0, 1e-5) noise on
the drop scores (ties go to the lower index, TF top_k's order), no update at T_end itself, and
SET (grow=random) in RigL's order, its update in place of the optimizer step (the reference's SET
steps first, then updates).
A third is kept out of the runs: an active weight at exactly 0 ties with the inactive ones, and
where such a tie keeps an inactive place, the reference revives the raw value it still stores
there while the project has 0 (no stored value); the grid below has no zero.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from acdc_exp.models.factory import build_model
from acdc_exp.plan import Plan
from acdc_exp.plan.lr import LRSegment
from acdc_exp.quantization import NoQuantization
from acdc_exp.sparsity.dynamic_masks import erk_sparsities, zeros_of
from acdc_exp.sparsity.methods.rigl import RiglSchedule, RiglSparsifier
from acdc_exp.sparsity.selection import select_parameters
from acdc_exp.training.precision import full_precision
from acdc_exp.training.step import train_step

RIGL_PARAMS = ["layer*.conv*.weight", "layer*.downsample.0.weight"]  # configs/sparsity/rigl.yaml


# --- the transcription ------------------------------------------------------------------------


def reference_erk(shapes: dict, default_sparsity: float, erk_power_scale: float = 1.0) -> dict:
    """get_sparsities_erdos_renyi with include_kernel=True and no custom sparsities."""
    dense_layers: set = set()
    while True:
        divisor = 0
        rhs = 0
        raw_probabilities = {}
        for name, shape_list in shapes.items():
            n_param = np.prod(shape_list)
            n_zeros = int(np.floor(default_sparsity * n_param))
            if name in dense_layers:
                rhs -= n_zeros
            else:
                rhs += n_param - n_zeros
                raw_probabilities[name] = (np.sum(shape_list) / np.prod(shape_list)) ** erk_power_scale
                divisor += raw_probabilities[name] * n_param
        eps = rhs / divisor
        max_prob = np.max(list(raw_probabilities.values()))
        if max_prob * eps > 1:
            for name, raw in raw_probabilities.items():
                if raw == max_prob:
                    dense_layers.add(name)
        else:
            break
    return {n: 0.0 if n in dense_layers else 1.0 - eps * raw_probabilities[n] for n in shapes}


def reference_drop_fraction(step: int, alpha: float, end_step: int) -> np.float32:
    """TF1 cosine_decay(alpha, global_step, end_step - begin_step), all in float32 (begin 0)."""
    t = np.minimum(np.float32(step), np.float32(end_step)) / np.float32(end_step)
    return np.float32(alpha) * (np.float32(0.5) * (np.float32(1.0) + np.cos(np.float32(math.pi) * t)))


def reference_update(mask: np.ndarray, weights: np.ndarray, score_grow: np.ndarray, drop_fraction: np.float32):
    """_get_update_op: (new mask, new connections), both of the mask's shape."""
    m = mask.reshape(-1).astype(np.float32)
    n_total = m.size
    n_ones = int(m.sum())
    n_prune = int(np.float32(n_ones) * drop_fraction)
    n_keep = n_ones - n_prune
    score_drop = np.abs(m * weights.reshape(-1))
    order = np.argsort(-score_drop, kind="stable")  # top_k: ties to the lower index
    mask1 = np.zeros(n_total, np.float32)
    mask1[order[:n_keep]] = 1
    grow = score_grow.reshape(-1)
    lifted = np.where(mask1 == 1, grow.min() - 1, grow)
    order = np.argsort(-lifted, kind="stable")
    mask2 = np.zeros(n_total, np.float32)
    mask2[order[:n_prune]] = 1
    assert (mask1 * mask2).sum() == 0
    new_connections = (mask2 == 1) & (m == 0)
    return (mask1 + mask2).reshape(mask.shape), new_connections.reshape(mask.shape)


def set_scores(seed: int, step: int, shapes: list) -> list:
    """SET's uniform grow scores as the project draws them: one CPU stream per (seed, step)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return [torch.rand(s, generator=g).numpy() for s in shapes]


# --- ERK --------------------------------------------------------------------------------------


def _shapes(model: nn.Module) -> dict:
    return {n: tuple(p.shape) for n, p in select_parameters(model, RIGL_PARAMS)}


@pytest.mark.parametrize("arch", ["resnet50", "resnet_small"])
def test_erk_sparsities_equal_the_reference_formula(arch):
    shapes = _shapes(build_model(arch, num_classes=1000 if arch == "resnet50" else 10))
    assert len(shapes) == (52 if arch == "resnet50" else 8)  # 6 convs + 2 downsamples
    made_dense = 0
    for sparsity in (0.5, 0.8, 0.9, 0.95, 0.98):
        ours, ref = erk_sparsities(shapes, sparsity), reference_erk(shapes, sparsity)
        assert ours == pytest.approx(ref, rel=0, abs=0)  # the same float, layer by layer
        made_dense += sum(v == 0.0 for v in ref.values())
        # ERK keeps what uniform sparsity keeps (up to the floor of each layer's count)
        kept = sum(math.prod(s) * (1 - ours[n]) for n, s in shapes.items())
        uniform = sum(math.prod(s) - zeros_of(math.prod(s), sparsity) for s in shapes.values())
        assert kept == pytest.approx(uniform, rel=1e-9)
    if arch == "resnet_small":
        assert made_dense > 0  # the loop that makes layers dense ran (low sparsity, small 1x1 convs)


# --- whole runs, step by step -----------------------------------------------------------------

LR, MOMENTUM, WD = 0.1, 0.9, 1e-3
EPOCHS, STEPS_PER_EPOCH, DELTA_T, ALPHA, END_FRACTION = 4, 10, 4, 0.3, 0.75
SEED = 3
PARAMS = ["0.weight", "2.weight", "5.weight"]


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 12, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(12 * 6 * 6, 5),
    )
    with torch.no_grad():  # a coarse grid without 0: the first update meets many equal magnitudes
        for name in PARAMS:
            w = net.get_parameter(name)
            w.copy_((torch.floor(w * 32) + 0.5) / 32)
    return net


class Parts:
    """What train_step touches: the project's sparsifier, torch's SGD, fp32."""

    def __init__(self, model: nn.Module, sparsifier: RiglSparsifier) -> None:
        self.model = self.forward = model
        self.optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD, nesterov=True)
        self.criterion = nn.CrossEntropyLoss()
        self.sparsifier = sparsifier
        sparsifier.attach_optimizer(self.optimizer)
        self.quantizer = NoQuantization()
        self.precision = full_precision(torch.device("cpu"))
        self.scaler = self.precision.grad_scaler()

    def start_qat(self, p) -> None:
        raise AssertionError("no QAT here")


RUNS = [("uniform", "gradient", 0.7), ("erk", "gradient", 0.8), ("uniform", "random", 0.6)]


@pytest.mark.parametrize("distribution,grow,sparsity", RUNS)
def test_rigl_steps_equal_the_reference_weight_for_weight(distribution, grow, sparsity):
    torch.set_num_threads(1)
    model = _net()
    reference = copy.deepcopy(model)  # raw weights: the reference never zeroes them
    schedule = RiglSchedule(sparsity, DELTA_T, ALPHA, END_FRACTION, dense_gradient=grow == "gradient")
    plan = Plan(
        epochs=EPOCHS,
        steps_per_epoch=STEPS_PER_EPOCH,
        lr_segments=[LRSegment("constant", 0.0, None, LR)],
        weight_decay=WD,
        sparsity=schedule,
    )
    sparsifier = RiglSparsifier(model, params=PARAMS, sparsity=sparsity, distribution=distribution, grow=grow, seed=SEED)
    parts = Parts(model, sparsifier)
    first = sparsifier.begin_step(plan.at(0))  # the initial random masks: the reference's are random too

    named = dict(reference.named_parameters())
    shapes = {n: tuple(named[n].shape) for n in PARAMS}
    layer = reference_erk(shapes, sparsity) if distribution == "erk" else {n: sparsity for n in PARAMS}
    masks = {n: sparsifier.masks[n].numpy().astype(np.float32) for n in PARAMS}
    for n in PARAMS:  # each starts with floor(s * n) zeros, as get_mask_random
        assert int((masks[n] == 0).sum()) == int(np.floor(layer[n] * masks[n].size))
    assert first.checksum is not None and first.changed_fraction is None
    opt = torch.optim.SGD(reference.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD, nesterov=True)
    end_step = int(END_FRACTION * plan.total_steps)

    g = torch.Generator().manual_seed(11)
    batches = [(torch.randn(16, 2, 6, 6, generator=g), torch.randint(0, 5, (16,), generator=g)) for _ in range(5)]
    updates_seen = []
    for step in range(plan.total_steps):
        x, y = batches[step % len(batches)]
        train_step(parts, x, y, plan.at(step), on_mask_update=updates_seen.append)

        # the reference: forward on weights * mask, gradients of the masked weights (dense)
        effective = {n: (named[n].detach() * torch.from_numpy(masks[n])).requires_grad_() for n in PARAMS}
        loss = nn.functional.cross_entropy(functional_call(reference, effective, (x,)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step % DELTA_T == 0 and step < end_step:  # is_mask_update_iter; no update at T_end
            fraction = reference_drop_fraction(step, ALPHA, end_step)
            grow_scores = (
                [effective[n].grad.abs().numpy() for n in PARAMS]
                if grow == "gradient"
                else set_scores(SEED, step, [shapes[n] for n in PARAMS])
            )
            for n, score in zip(PARAMS, grow_scores):
                weights = named[n].detach().numpy()
                masks[n], new = reference_update(masks[n], weights, score, fraction)
                new_t = torch.from_numpy(new)
                with torch.no_grad():
                    named[n].masked_fill_(new_t, 0.0)  # grow_init zeros
                buf = opt.state.get(named[n], {}).get("momentum_buffer")
                if buf is not None:
                    buf.masked_fill_(new_t, 0.0)  # reset_momentum (initial_acc_scale 0)
            # the update replaced the optimizer step (cond(is_update, mask_update, apply_gradients))
        else:
            for n in PARAMS:
                named[n].grad = effective[n].grad * torch.from_numpy(masks[n])
            opt.step()

        ours = dict(model.named_parameters())
        for n, p in named.items():
            if n in masks:
                assert np.array_equal(sparsifier.masks[n].numpy(), masks[n].astype(bool)), (step, n)
                assert torch.equal(ours[n], p.detach() * torch.from_numpy(masks[n])), (step, n)
            else:
                assert torch.equal(ours[n], p), (step, n)

    update_steps = [u.step for u in updates_seen if u.drop_fraction is not None]
    assert update_steps == list(range(0, end_step, DELTA_T)) and len(update_steps) == 8
    assert all(0.0 < u.changed_fraction < 0.5 for u in updates_seen if u.drop_fraction)


def test_under_loss_scaling_an_update_reads_true_gradients_and_an_overflow_skips_it():
    """fp16 training scales the loss: an update step unscales first (the grow scores are the true
    gradients, the scaler's overflow check is made), and an overflowed step updates nothing and
    takes no optimizer step while the scale backs off, as the scaler does on any step."""
    torch.set_num_threads(1)
    model = _net()
    sparsifier = RiglSparsifier(model, params=PARAMS, sparsity=0.7, distribution="uniform", grow="gradient", seed=SEED)
    parts = Parts(model, sparsifier)
    parts.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    plan = Plan(
        epochs=EPOCHS,
        steps_per_epoch=STEPS_PER_EPOCH,
        lr_segments=[LRSegment("constant", 0.0, None, LR)],
        weight_decay=WD,
        sparsity=RiglSchedule(0.7, DELTA_T, ALPHA, END_FRACTION),
    )
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(16, 2, 6, 6, generator=g), torch.randint(0, 5, (16,), generator=g)
    sparsifier.begin_step(plan.at(0))
    start = {n: m.clone() for n, m in sparsifier.masks.items()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    overflow = x.clone()
    overflow[0, 0, 0, 0] = float("inf")
    updates = []
    train_step(parts, overflow, y, plan.at(0), on_mask_update=updates.append)
    assert updates == [] and parts.scaler.get_scale() == 512.0
    assert all(torch.equal(sparsifier.masks[n], start[n]) for n in PARAMS)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # no step

    train_step(parts, x, y, plan.at(0), on_mask_update=updates.append)
    assert len(updates) == 1 and updates[0].drop_fraction == ALPHA and parts.scaler.get_scale() == 512.0
    for n, p in model.named_parameters():
        if n in PARAMS:
            kept = start[n] & sparsifier.masks[n]
            assert not torch.equal(sparsifier.masks[n], start[n])
            assert torch.equal(p[kept], before[n][kept]) and bool((p[~sparsifier.masks[n]] == 0).all())
        else:
            assert torch.equal(p, before[n])  # the update took the step's place: no SGD step
    # the grow scores were the unscaled gradients: what a step without loss scaling grows
    plain = _net()
    reference = RiglSparsifier(plain, params=PARAMS, sparsity=0.7, distribution="uniform", grow="gradient", seed=SEED)
    plain_parts = Parts(plain, reference)
    reference.begin_step(plan.at(0))
    train_step(plain_parts, x, y, plan.at(0))
    assert all(torch.equal(reference.masks[n], sparsifier.masks[n]) for n in PARAMS)
