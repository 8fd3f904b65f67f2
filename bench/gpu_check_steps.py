"""The measuring half of bench/gpu_check.py: the trainer's step on a synthetic batch, its
step kinds (dense, compressed with two-pass and one-pass hooks, QAT with observers on and
frozen), repeated timing windows, host syncs per step, and the time-budget guard."""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from acdc_exp.models import build_model
from acdc_exp.plan import QatStep, StepPlan
from acdc_exp.quantization.qat import QATController
from acdc_exp.sparsity.sparsifier import Sparsifier
from acdc_exp.training.metrics import topk_hits
from acdc_exp.training.precision import Precision, channels_last_on, full_precision, resolve_precision
from acdc_exp.training.step import train_step

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "configs" / "experiment" / "resnet50_imagenet_acdc85_quant.yaml"
# its sparsity settings, which Hydra merges under sparsity: when sparsity=acdc (the default): what
# every pruning method shares, then the AC/DC-only ones
EXPERIMENT_MASKED = ROOT / "configs" / "sparsity" / "masked" / "for_resnet50_imagenet_acdc85_quant.yaml"
EXPERIMENT_ACDC = ROOT / "configs" / "sparsity" / "experiment" / "acdc_resnet50_imagenet_acdc85_quant.yaml"
SGD_CONFIG = ROOT / "configs" / "optimizer" / "sgd.yaml"
SMALL_PARAMS = ["layer*.conv*.weight", "layer*.downsample.0.weight"]  # configs/sparsity/acdc.yaml
# ImageNet mean/std on the 0-255 scale, as configs/data/imagenet_ffcv.yaml gives DataModule.prepare
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
FLOAT_KINDS = ("dense", "compressed_two_pass", "compressed_one_pass")
QAT_KINDS = ("qat", "qat_frozen")
KINDS = FLOAT_KINDS + QAT_KINDS
FLOAT_LR, QAT_LR = 0.01, 5e-5  # QAT_LR: the experiment's quantization_init_lr
SYNC_WARNING = "synchronizing"  # torch's sync debug warning: "called a synchronizing CUDA operation"


def experiment() -> DictConfig:
    """The reference experiment as Hydra composes its sparsity node, without Hydra (a bare GPU
    machine may lack it): the experiment file, then its sparsity settings (shared, AC/DC-only)."""
    xp = OmegaConf.load(EXPERIMENT)
    xp.sparsity = OmegaConf.merge(OmegaConf.load(EXPERIMENT_MASKED), OmegaConf.load(EXPERIMENT_ACDC))
    return xp


def plan(
    phase: str, *, step: int = 0, update: bool = False, qat: bool = False, frozen: bool = False, lr: Optional[float] = None
) -> StepPlan:
    return StepPlan.make(
        phase,
        0.85 if phase == "compressed" else 0.0,
        update_masks=update,
        step=step,
        lr=lr if lr is not None else QAT_LR if qat else FLOAT_LR,
        weight_decay=1e-5,
        qat=QatStep(active=qat, observers_frozen=frozen, bn_frozen=frozen),
    )


def build_sgd(model: nn.Module) -> Tuple[torch.optim.Optimizer, str]:
    """The trainer's optimizer: configs/optimizer/sgd.yaml with the experiment's overrides
    (momentum 0.9, Nesterov, wd 1e-5), built by the trainer's build_optimizer (fused on CUDA)."""
    cfg = OmegaConf.merge(OmegaConf.load(SGD_CONFIG), experiment().optimizer)
    try:
        from acdc_exp.training.setup import build_optimizer  # needs hydra
    except ImportError:  # a bare GPU machine without hydra: the same settings by hand
        on_cuda = all(p.is_cuda for p in model.parameters())
        opt = torch.optim.SGD(
            model.parameters(),
            lr=float(cfg.lr),
            momentum=float(cfg.momentum),
            nesterov=bool(cfg.nesterov),
            weight_decay=float(cfg.weight_decay),
            fused=True if on_cuda else None,
        )
        return opt, "torch.optim.SGD with the config's settings (hydra missing)"
    return build_optimizer(cfg, model), "acdc_exp.training.setup.build_optimizer"


class Stepper:
    """The trainer's step (training/step.py::train_step) on one fixed synthetic uint8
    batch resident on the device (data loading is not measured)."""

    def __init__(self, args: Any, device: torch.device, batch: int, *, compiled: bool = False) -> None:
        torch.manual_seed(0)
        self.device, self.batch, self.compiled, self.backend = device, batch, compiled, args.compile_backend
        self.precision: Precision = resolve_precision(args.amp, device)
        self.fmt = torch.channels_last if channels_last_on(args.channels_last, device) else torch.contiguous_format
        self.model = build_model(args.model, num_classes=args.classes).to(device, memory_format=self.fmt)
        self.optimizer, self.opt_source = build_sgd(self.model)
        self.scaler = self.precision.grad_scaler()
        xp = experiment()
        sp, q = xp.sparsity, xp.quantization
        self.sparsifier = Sparsifier(
            self.model,
            params=list(sp.params) if args.model == "resnet50" else SMALL_PARAMS,
            mask_type=str(sp.mask_type),
            global_sparsity=bool(sp.global_sparsity),
            reset_momentum=str(sp.reset_momentum),
            dead_channels=str(sp.dead_channels),
        )
        self.sparsifier.attach_optimizer(self.optimizer)
        self.quantizer = QATController(submodules=list(q.submodules), reduce_range=bool(q.reduce_range))
        self.forward = self._wrap()
        self.criterion = nn.CrossEntropyLoss()
        gen = torch.Generator(device="cpu").manual_seed(1)
        shape = (batch, 3, args.res, args.res)
        self.images_u8 = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen).to(device)
        self.labels = torch.randint(0, args.classes, (batch,), generator=gen).to(device)
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
        self.mask_step = 0  # the step of the last mask update (the plan's step for two-pass steps)

    def _wrap(self) -> nn.Module:
        # as Trainer._wrap (compile_mode null); called again after the QAT swap: a fresh compile
        return torch.compile(self.model, backend=self.backend) if self.compiled else self.model

    def images(self) -> torch.Tensor:
        # DataModule.prepare + Trainer._prepare, every step as in the trainer
        x = torch.sub(self.images_u8.to(torch.float32), self.mean).div_(self.std)
        return x.contiguous(memory_format=self.fmt)

    def start_qat(self, p: StepPlan) -> None:
        """Trainer.enter_qat (StepParts): swap in the QAT modules, rebind masks, rewrap, fp32 from here on."""
        self.quantizer.prepare(self.model)
        self.sparsifier.rebind(self.model)
        self.forward = self._wrap()
        self.precision = full_precision(self.device)
        self.scaler = self.precision.grad_scaler()  # disabled: no loss scaling in fp32

    def step(self, p: StepPlan) -> torch.Tensor:
        """The trainer's step (training/step.py::train_step) on the resident batch."""
        loss, logits = train_step(self, self.images(), self.labels, p)
        topk_hits(logits, self.labels, ks=(1,))  # the trainer's top-1 tensor, not read
        return loss

    def update_masks(self, step: int) -> float:
        """A step that recomputes the masks (once per compressed phase); its seconds."""
        self.mask_step = step
        return timed_steps(self, plan("compressed", step=step, update=True), 1)

    def settle(self) -> int:
        """Put the hooks in their one-pass mode as SGD does by itself after ~840 steps: decay
        the pruned entries' momentum by momentum**n (what n steps of masked zero gradients do,
        bench/bench_step_overhead.py) and let the sparsifier's own check find it subnormal."""
        sp, stale = self.sparsifier, self.sparsifier.stale_momentum
        momentum = max(g.get("momentum", 0.0) for g in self.optimizer.param_groups)
        named = dict(self.model.named_parameters())
        step = self.mask_step
        for _ in range(16):
            if stale.settled:
                return step
            target = stale.check_at if stale.check_at is not None else step + 1
            with torch.no_grad():
                for n, m in (sp.masks or {}).items():
                    buf = self.optimizer.state.get(named[n], {}).get("momentum_buffer")
                    if buf is not None:
                        buf.mul_(torch.where(m, 1.0, momentum ** (target - step)))
            step = target
            sp.begin_step(plan("compressed", step=step))  # StaleMomentum.maybe_settle at check_at
        raise RuntimeError("the stale momentum did not settle (sparsity/stale_momentum.py)")

    def hook_passes(self) -> int:
        if self.sparsifier.masks is None:
            return 0
        return 1 if self.sparsifier.stale_momentum.settled else 2


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(s: Stepper, p: StepPlan, n: int) -> float:
    sync(s.device)
    t = time.perf_counter()
    for _ in range(n):
        s.step(p)
    sync(s.device)
    return time.perf_counter() - t


def count_syncs(s: Stepper, p: StepPlan, steps: int) -> Tuple[Optional[float], List[str]]:
    """Host syncs per step: torch's sync debug mode warns at every synchronizing CUDA call
    (.item(), a bool of a CUDA tensor, a blocking copy); no synchronize() inside. CPU: None."""
    if s.device.type != "cuda" or steps <= 0:
        return None, []
    sync(s.device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning, not once per call site
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                s.step(p)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    hits = [w for w in caught if SYNC_WARNING in str(w.message)]
    sites = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in hits)
    return len(hits) / steps, [f"{site} x{k}" for site, k in sites.most_common(5)]


@dataclass
class Budget:
    """Skips an item (recorded, never half-run) when its estimate exceeds the time left."""

    seconds: float
    start: float = field(default_factory=time.perf_counter)
    skipped: List[Dict[str, str]] = field(default_factory=list)

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def allows(self, item: str, estimate_s: float) -> bool:
        if estimate_s <= self.left():
            return True
        self.skip(item, f"time budget: needs ~{estimate_s:.0f} s, {max(self.left(), 0.0):.0f} s left")
        return False

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append({"item": item, "reason": reason})


@dataclass
class Estimates:
    """Seconds a kind will take: measured step times where known, else priors from the
    brief's H100 figures (ResNet-50 at 224 px, AMP: ~0.33 s at batch 256, ~0.06 s at 32;
    QAT in fp32 with fake quantization ~3x; cuDNN autotuning ~5 s; a compile ~90 s)."""

    args: Any
    device: torch.device
    step_s: Dict[str, float] = field(default_factory=dict)  # "mode/batch/family" -> seconds
    compile_s: Dict[str, float] = field(default_factory=dict)  # family -> a measured first compiled step

    def step(self, mode: str, batch: int, family: str) -> float:
        for key in (f"{mode}/{batch}/{family}", f"eager/{batch}/{family}"):
            if key in self.step_s:
                return self.step_s[key]
        if f"eager/{batch}/float" in self.step_s and family == "qat":
            return 3.0 * self.step_s[f"eager/{batch}/float"]
        per_img = 1.2e-3 if self.device.type == "cuda" else 2e-2
        base = 0.02 + batch * per_img * (self.args.res / 224) ** 2
        return base * (3.0 if family == "qat" else 1.0)

    def kind(self, mode: str, batch: int, family: str, *, first: bool) -> float:
        a, step = self.args, self.step(mode, batch, family)
        steps = 1 + a.warmup + 2 + (a.sync_steps if self.device.type == "cuda" else 0)
        timed = a.windows * max(a.window_s, a.min_window_steps * step)
        extra = 0.0
        if first:  # a fresh model (and the QAT group's float steps and module swap)
            extra = 2.0 + (4 * self.step(mode, batch, "float") if family == "qat" else 0.0)
            if mode == "compiled":  # another batch's compile of the same graph predicts this one
                extra += 1.25 * self.compile_s[family] if family in self.compile_s else a.compile_allowance_s
            elif self.device.type == "cuda":
                extra += 5.0  # cudnn.benchmark autotunes each new conv shape at the first step
        return steps * step + timed + extra


def measure_kind(s: Stepper, kind: str, p: StepPlan, args: Any, mode: str) -> Dict[str, Any]:
    """Warm-up, then ``args.windows`` windows of N steps each (N sized to ``args.window_s``
    from two calibration steps), then host syncs per step."""
    t0 = time.perf_counter()
    first = timed_steps(s, p, 1)  # cuDNN autotuning / compilation happen here
    timed_steps(s, p, args.warmup)
    calib = timed_steps(s, p, 2) / 2
    n = max(args.min_window_steps, math.ceil(args.window_s / max(calib, 1e-9)))
    rates = [n * s.batch / timed_steps(s, p, n) for _ in range(args.windows)]
    syncs, sites = count_syncs(s, p, args.sync_steps)
    med = statistics.median(rates)
    return {
        "mode": mode,
        "batch": s.batch,
        "res": args.res,
        "kind": kind,
        "precision": s.precision.name,
        "hook_passes": s.hook_passes(),
        "img_per_s": med,
        "step_ms": 1e3 * s.batch / med,
        "windows": args.windows,
        "steps_per_window": n,
        "img_per_s_windows": rates,
        "spread_pct": 100.0 * (max(rates) - min(rates)) / med,
        "rel_std_pct": 100.0 * statistics.pstdev(rates) / statistics.mean(rates),
        "syncs_per_step": syncs,
        "sync_sites": sites,
        "first_step_s": first,
        "last_loss": float(s.step(p)),
        "wall_s": time.perf_counter() - t0,
    }


def measure_group(
    args: Any,
    device: torch.device,
    family: str,
    batch: int,
    mode: str,
    budget: Budget,
    est: Estimates,
    emit: Callable[[Dict[str, Any]], None],
) -> None:
    """One model through its kinds in a run's order. float: dense steps, a mask update, the
    compressed phase's first window (two hook passes), then after the stale momentum settled
    (one pass). qat: a settled compressed model switched to QAT; observers on (its first
    epoch), then observers and BN statistics frozen (the remaining epochs)."""
    kinds = FLOAT_KINDS if family == "float" else QAT_KINDS
    s: Optional[Stepper] = None
    for i, kind in enumerate(kinds):
        item = f"{mode} batch {batch} {kind}"
        if not budget.allows(item, est.kind(mode, batch, family, first=i == 0)):
            for rest in kinds[i + 1 :]:
                budget.skip(f"{mode} batch {batch} {rest}", f"follows {kind}, which was skipped")
            break
        extra: Dict[str, Any] = {}
        if s is None and family == "float":
            s = Stepper(args, device, batch, compiled=mode == "compiled")
        elif s is None:  # float steps eager: in a compiled run only the QAT graph is compiled
            s = Stepper(args, device, batch)
            for _ in range(2):
                s.step(plan("dense"))
            s.update_masks(step=2)
            s.settle()
            s.compiled = mode == "compiled"
        if kind == "dense":
            p = plan("dense")
        elif kind == "compressed_two_pass":
            extra["mask_update_step_s"] = s.update_masks(step=10_000)
            p = plan("compressed", step=s.mask_step)  # before check_at: the weight pass stays
        elif kind == "compressed_one_pass":
            p = plan("compressed", step=s.settle())
        else:
            p = plan("compressed", step=s.settle(), qat=True, frozen=kind == "qat_frozen")
        row = {**measure_kind(s, kind, p, args, mode), **extra}
        est.step_s[f"{mode}/{batch}/{family}"] = row["step_ms"] / 1e3
        if mode == "compiled" and i == 0:
            est.compile_s[family] = max(est.compile_s.get(family, 0.0), row["first_step_s"])
        emit(row)
    del s
    if device.type == "cuda":
        torch.cuda.empty_cache()
