"""Quantization-aware training at the end of AC/DC, on torch.ao.quantization eager QAT.

The trainer calls ``begin_step(p, model)`` every step. On the first QAT step the model is
prepared in place: Conv-BN(-ReLU) groups are fused (``fuse_modules_qat``), the chosen regions
get the qconfig, and ``prepare_qat`` swaps in fake-quantizing modules. Fusion and the QAT
swap reuse the original ``nn.Parameter`` objects (the optimizer keeps working) and the fused
module takes the conv's name, so ``layer1.0.conv1.weight`` still names the pruned weight.
After that the plan's observer and BN-statistics freezes are applied, idempotently.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch
import torch.ao.quantization as tq
from omegaconf import MISSING, DictConfig
from torch import nn
from torch.ao.quantization.quantize import _observer_forward_hook as _torch_observer_hook

from acdc_exp.errors import ConfigError
from acdc_exp.machine import int8_engine_exact
from acdc_exp.models.sync_bn import from_sync_batchnorm, plain_batchnorm
from acdc_exp.plan import QATSchedule, StepPlan
from acdc_exp.quantization.qconfig import SymmetricWeightFakeQuantize, build_qconfig, check_backend, quiet_ao, use_engine
from acdc_exp.quantization.regions import assign_qconfig, check_submodules, fusion_groups
from acdc_exp.registries import QUANTIZATION, VariantConfig

# widens u8 x s8 products to int32 on every CPU: the fallback where the backend would saturate
EXACT_ENGINE = "qnnpack"


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class QATController:
    def __init__(
        self,
        *,
        submodules: Sequence[str] = ("input", "sections"),
        fuse: bool = True,
        per_channel: bool = False,
        reduce_range: bool = False,
        num_bits: int = 8,
        backend: str = "x86",
    ) -> None:
        self.submodules = check_submodules(submodules)
        self.fuse = fuse
        self.backend = check_backend(backend)
        self.reduce_range = bool(reduce_range)
        self.qconfig = build_qconfig(per_channel=per_channel, reduce_range=reduce_range, num_bits=num_bits)
        self.prepared = False
        # (observers_frozen, bn_frozen) last applied; None forces a re-apply (after prepare/resume)
        self._applied: Optional[tuple] = None

    @classmethod
    def from_config(cls, cfg: DictConfig, model: Optional[nn.Module] = None) -> "QATController":
        """From a QatConfig. ``model`` is checked now, so a model QAT cannot handle
        fails at start-up rather than when QAT begins, late in the run."""
        ctrl = cls(
            submodules=list(cfg.submodules),
            fuse=bool(cfg.fuse),
            per_channel=bool(cfg.per_channel),
            reduce_range=bool(cfg.reduce_range),
            num_bits=int(cfg.num_bits),
            backend=str(cfg.backend),
        )
        if model is not None:
            ctrl.check_model(model)
        return ctrl

    def check_model(self, model: nn.Module) -> None:
        """ConfigError unless ``model`` has the stubs and layout eager QAT needs."""
        missing = [n for n in ("quant", "dequant") if not isinstance(getattr(model, n, None), (tq.QuantStub, tq.DeQuantStub))]
        if missing:
            raise ConfigError(
                f"quantization=qat but {type(model).__name__} has no {'/'.join(missing)} stub; "
                "allowed: the quantization-ready models of acdc_exp.models"
            )
        for group in fusion_groups(model, self.submodules):
            for name in group:
                try:
                    model.get_submodule(name)
                except AttributeError:
                    raise ConfigError(f"QAT fusion expects module {name!r} in {type(model).__name__}; it has none") from None

    # --- trainer hooks --------------------------------------------------------------------

    def begin_step(self, p: StepPlan, model: nn.Module) -> bool:
        """Prepare on the first QAT step (True then: modules were swapped); apply freezes."""
        if not p.qat.active:
            return False
        swapped = False
        if not self.prepared:
            self.prepare(model)
            swapped = True
        self.apply_freezes(model, observers_frozen=p.qat.observers_frozen, bn_frozen=p.qat.bn_frozen)
        return swapped

    def prepare(self, model: nn.Module) -> None:
        """Fuse, assign the qconfig and insert fake quantization, in place."""
        if self.prepared:
            raise RuntimeError("QATController.prepare called twice")
        device = _model_device(model)
        was_training = model.training
        # torch.ao fuses Conv with plain BatchNorm only: unsync for the swap; the BNs (the fused
        # modules' ones included) are synced again after it
        with quiet_ao(), plain_batchnorm(model):
            if self.fuse:
                # the QAT fusion needs train mode (eval-mode fusion folds BN away)
                model.train()
                tq.fuse_modules_qat(model, fusion_groups(model, self.submodules), inplace=True)
            assign_qconfig(model, self.submodules, self.qconfig)
            model.train()
            tq.prepare_qat(model, inplace=True)
        for mod in model.modules():
            fq = getattr(mod, "weight_fake_quant", None)
            if isinstance(fq, SymmetricWeightFakeQuantize):
                fq.ensure_shape(mod.weight)
        _swap_observer_hooks(model, _torch_observer_hook, _fake_quant_output)
        # fake-quant modules are created on the CPU; ``to`` moves only them (params stay the
        # same objects because module conversion updates tensors in place)
        model.to(device)
        model.train(was_training)
        self.prepared = True
        self._applied = None

    def apply_freezes(self, model: nn.Module, *, observers_frozen: bool, bn_frozen: bool) -> None:
        want = (bool(observers_frozen), bool(bn_frozen))
        if want == self._applied:
            return
        # the plan is monotonic (a freeze never ends), so only freezing needs an action
        if observers_frozen:
            model.apply(tq.disable_observer)
        if bn_frozen:
            freeze_bn_stats(model)
        self._applied = want

    def convert(self, model: nn.Module, engine: Optional[str] = None) -> Optional[nn.Module]:
        """An int8 copy of the prepared model for CPU evaluation (``model`` is untouched), for
        ``engine`` (default: ``int8_engine()``, the exact one; the backend where none is)."""
        if not self.prepared:
            return None
        return convert_to_int8(model, engine or self.int8_engine() or self.backend)

    def backend_exact_on_this_cpu(self) -> bool:
        """Whether the configured backend's int8 kernels, as they run in this process, compute
        the converted model as the fake-quantized one does. fbgemm/oneDNN multiply u8
        activations by s8 weights with AVX2's vpmaddubsw, which sums pairs of products in
        int16: with 8-bit activations (0..255) those sums saturate (2 * 255 * 127 > 32767)
        unless the kernels use int8 dot products (VNNI/AMX, int32 sums); the kernel ISA
        overrides in the environment count (acdc_exp.machine). 7-bit activations
        (reduce_range) cannot overflow; qnnpack always widens to int32."""
        return self.reduce_range or int8_engine_exact(self.backend)

    def int8_engine(self, backend_exact: Optional[bool] = None) -> Optional[str]:
        """The engine that scores the int8 model exactly here: the configured backend when its
        kernels cannot saturate, else qnnpack (int32 sums on every CPU; slower); None when
        this torch has neither, and then no int8 score should be reported. ``backend_exact``:
        the backend's exactness as all ranks agreed it (one engine for every shard)."""
        if self.backend_exact_on_this_cpu() if backend_exact is None else backend_exact:
            return self.backend
        return EXACT_ENGINE if EXACT_ENGINE in torch.backends.quantized.supported_engines else None

    def int8_exact_on_this_cpu(self) -> bool:
        """Whether the int8 score this controller gives (``convert()``, ``int8_engine()``) is
        exact on this machine: always, unless no engine without saturation is built in."""
        return self.int8_engine() is not None

    # --- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict:
        # observer/fake-quant state lives in the model's buffers; only the structure flag here
        return {"prepared": self.prepared, "backend": self.backend, "submodules": list(self.submodules), "fuse": self.fuse}

    def load_state_dict(self, state: dict) -> None:
        # the trainer calls prepare() before this when the checkpoint was prepared
        if bool(state.get("prepared")) and not self.prepared:
            raise RuntimeError("checkpoint was taken during QAT: call prepare(model) before loading it")
        self._applied = None


def freeze_bn_stats(model: nn.Module) -> None:
    """Stop BN running statistics. Fused QAT modules switch to normalizing with their running
    stats (torch's ``freeze_bn_stats``); a BN left unfused (fuse=false) keeps normalizing
    with batch stats but stops updating (momentum 0), so running_mean/var stay as they are."""
    fused_bns = set()
    for m in model.modules():
        if callable(getattr(m, "freeze_bn_stats", None)) and isinstance(getattr(m, "bn", None), nn.Module):
            m.freeze_bn_stats()
            fused_bns.add(id(m.bn))
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in fused_bns:
            m.momentum = 0.0


def _fake_quant_output(module: nn.Module, _input: object, output: torch.Tensor) -> torch.Tensor:
    """What torch's ``_observer_forward_hook`` does, from a file torch.compile traces: Dynamo
    skips every function under torch.ao.quantization, so torch's hook broke the graph after
    each quantized module (and its code object recompiled per conv shape, past the limit)."""
    return module.activation_post_process(output)


def _swap_observer_hooks(model: nn.Module, old: Callable, new: Callable) -> None:
    """Replace forward hook ``old`` by ``new`` in place (the hooks' order stays)."""
    for m in model.modules():
        for key, fn in list(m._forward_hooks.items()):
            if fn is old:
                m._forward_hooks[key] = new


def convert_to_int8(model: nn.Module, backend: str = "x86") -> nn.Module:
    """Deep copy -> CPU -> eval -> plain BatchNorm -> ``torch.ao.quantization.convert``."""
    int8 = from_sync_batchnorm(copy.deepcopy(model).cpu().eval())  # convert knows plain BatchNorm only
    # convert drops torch's own observer hook by identity (ours would move onto the int8 modules)
    _swap_observer_hooks(int8, _fake_quant_output, _torch_observer_hook)
    # packed int8 weights belong to the engine they were packed for, and the caller runs the
    # model next: the engine stays switched
    use_engine(backend)
    with quiet_ao():
        tq.convert(int8, inplace=True)
    return int8


@dataclass
class QatConfig(VariantConfig):
    start_epoch: float = MISSING
    # recipe submodule names: input = stem (conv1/bn1/relu), sections = layer1..layer4
    submodules: List[str] = MISSING
    disable_observer_epoch: Optional[float] = MISSING
    freeze_bn_stats_epoch: Optional[float] = MISSING
    fuse: bool = MISSING
    per_channel: bool = MISSING
    # 7-bit activations: int8 kernels without VNNI/AMX saturate on 8-bit ones (QATController.int8_exact_on_this_cpu)
    reduce_range: bool = MISSING
    num_bits: int = MISSING
    backend: str = MISSING


@QUANTIZATION.register(schema=QatConfig)
class Qat:
    """quantization=qat: eager QAT from ``start_epoch``; observers and BN statistics freeze later."""

    def __init__(self, cfg: DictConfig) -> None:
        if cfg.num_bits != 8:
            raise ConfigError(f"quantization.num_bits={cfg.num_bits} is not supported; allowed: 8")
        self.cfg = cfg

    def schedule(self) -> QATSchedule:
        c = self.cfg
        never = float("inf")
        return QATSchedule(
            enabled=True,
            start_epoch=float(c.start_epoch),
            disable_observer_epoch=never if c.disable_observer_epoch is None else float(c.disable_observer_epoch),
            freeze_bn_stats_epoch=never if c.freeze_bn_stats_epoch is None else float(c.freeze_bn_stats_epoch),
        )

    def controller(self, model: Optional[nn.Module] = None) -> QATController:
        return QATController.from_config(self.cfg, model)
