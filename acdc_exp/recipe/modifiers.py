"""The SparseML modifiers acdc-exp understands, and the fields each may carry.

Every field of a supported modifier is either *used* (translated into the config), *ignored*
on purpose, or an error: silently dropping a field would train something other than what the
recipe says. Ignored fields change nothing about what is trained:

* ``log_types``, ``constant_logging``: SparseML logging switches (acdc-exp logs lr, weight
  decay, phase and sparsity every step anyway);
* ``end_epoch`` of SetLearningRateModifier / SetWeightDecayModifier: SparseML sets the value
  once at ``start_epoch`` and never reads ``end_epoch``;
* ``end_epoch: -1`` of QuantizationModifier: SparseML's "never switch QAT off" default (any
  other value is an error: acdc-exp keeps QAT on to the end).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Mapping

from acdc_exp.errors import ConfigError
from acdc_exp.recipe.loader import RawModifier
from acdc_exp.recipe.variables import resolve_value

HARMLESS = frozenset({"log_types", "constant_logging"})


@dataclass(frozen=True)
class ModifierSpec:
    required: FrozenSet[str]
    optional: FrozenSet[str] = frozenset()
    ignored: FrozenSet[str] = HARMLESS


def _spec(required: str, optional: str = "", ignored: str = "") -> ModifierSpec:
    return ModifierSpec(frozenset(required.split()), frozenset(optional.split()), HARMLESS | frozenset(ignored.split()))


_PRUNING_COMMON = "mask_type global_sparsity leave_enabled"
SUPPORTED: Dict[str, ModifierSpec] = {
    "EpochRangeModifier": _spec("end_epoch", "start_epoch"),
    "LearningRateFunctionModifier": _spec("lr_func init_lr final_lr start_epoch end_epoch"),
    "SetLearningRateModifier": _spec("learning_rate", "start_epoch", ignored="end_epoch"),
    "SetWeightDecayModifier": _spec("weight_decay", "start_epoch", ignored="end_epoch"),
    "ACDCPruningModifier": _spec(
        "compression_sparsity start_epoch end_epoch update_frequency params", f"{_PRUNING_COMMON} momentum_buffer_reset"
    ),
    "GMPruningModifier": _spec(
        "init_sparsity final_sparsity start_epoch end_epoch update_frequency params", f"{_PRUNING_COMMON} inter_func"
    ),
    "MagnitudePruningModifier": _spec(
        "init_sparsity final_sparsity start_epoch end_epoch update_frequency params", f"{_PRUNING_COMMON} inter_func"
    ),
    "QuantizationModifier": _spec(
        "start_epoch submodules",
        "disable_quantization_observer_epoch freeze_bn_stats_epoch end_epoch reduce_range model_fuse_fn_name",
    ),
}
PRUNING = ("ACDCPruningModifier", "GMPruningModifier", "MagnitudePruningModifier")
LR = ("LearningRateFunctionModifier", "SetLearningRateModifier")


@dataclass
class Modifier:
    """A supported modifier with its fields computed (no ``eval(...)`` left)."""

    type: str
    fields: Dict[str, Any]
    position: int  # order in the recipe file, for stable sorting

    def has(self, name: str) -> bool:
        return name in self.fields

    def number(self, name: str, default: Any = None) -> float:
        """A numeric field; a missing optional one gives ``default``."""
        value = self.fields.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{self.type}.{name}={value!r} is not a number; allowed: a number or eval(...) expression")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.fields.get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.type}.{name}={value!r} is not a boolean; allowed: true, false")
        return value


def resolve_modifier(raw: RawModifier, env: Mapping[str, Any], position: int) -> Modifier:
    """Check the modifier type and its field names, then compute its ``eval(...)`` fields."""
    spec = SUPPORTED.get(raw.type)
    if spec is None:
        raise ConfigError(f"recipe modifier !{raw.type} (under {raw.group}) is not supported; allowed: {', '.join(SUPPORTED)}")
    names = set(raw.fields)
    unknown = sorted(names - spec.required - spec.optional - spec.ignored)
    if unknown:
        allowed = sorted(spec.required | spec.optional | spec.ignored)
        raise ConfigError(f"!{raw.type} field(s) {', '.join(unknown)} are not supported; allowed: {', '.join(allowed)}")
    missing = sorted(spec.required - names)
    if missing:
        raise ConfigError(f"!{raw.type} lacks required field(s): {', '.join(missing)}")
    fields = {k: resolve_value(v, env) for k, v in raw.fields.items() if k not in spec.ignored}
    return Modifier(raw.type, fields, position)
