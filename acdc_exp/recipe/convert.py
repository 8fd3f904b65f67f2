"""SparseML recipe -> the acdc-exp config sections it determines.

``recipe_to_config`` returns a plain dict (``trainer``, ``lr_schedule``, ``optimizer``,
``sparsity``, ``quantization``) ready to be merged over a composed ``TrainConfig``. The
translation keeps SparseML's meaning:

* EpochRangeModifier ``end_epoch`` -> ``trainer.epochs``;
* LearningRateFunctionModifier -> a ``linear``/``cosine`` segment, SetLearningRateModifier ->
  a ``constant`` segment; segments are sorted by start epoch, recipe order breaking ties,
  which is the order the plan's "latest start wins, later entry wins ties" rule expects;
* SetWeightDecayModifier -> ``lr_schedule.weight_decay`` (set once, held), and the one in
  force at epoch 0 also becomes ``optimizer.weight_decay``;
* ACDCPruningModifier / GMPruningModifier / MagnitudePruningModifier -> ``sparsity``, with
  SparseML ResNet parameter names translated to torchvision's and duplicates dropped;
* QuantizationModifier -> ``quantization``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from acdc_exp.errors import ConfigError
from acdc_exp.plan.lr import LRSegment, WeightDecaySegment
from acdc_exp.quantization.none import NoQat
from acdc_exp.quantization.qat import Qat
from acdc_exp.recipe.loader import card_training_flags, load_recipe_text, parse_recipe
from acdc_exp.recipe.modifiers import LR, PRUNING, Modifier, resolve_modifier
from acdc_exp.recipe.variables import RecipeArgs, parse_recipe_args, resolve_variables
from acdc_exp.registry import target_of
from acdc_exp.sparsity.masks import parse_mask_type
from acdc_exp.sparsity.methods.acdc import Acdc
from acdc_exp.sparsity.methods.dense import Dense
from acdc_exp.sparsity.methods.gmp import Gmp
from acdc_exp.sparsity.selection import to_torchvision_name

PathLike = Union[str, Path]


@dataclass
class Recipe:
    """A recipe with its variables resolved and its modifiers computed."""

    path: str
    variables: Dict[str, Any]
    modifiers: List[Modifier]
    metadata: Dict[str, Any]

    def of_type(self, *types: str) -> List[Modifier]:
        return [m for m in self.modifiers if m.type in types]


def load_recipe(recipe_path: PathLike, recipe_args: RecipeArgs = None) -> Recipe:
    """Read, parse and resolve a recipe (variables overridden by ``recipe_args``)."""
    raw = parse_recipe(load_recipe_text(recipe_path), source=f"recipe {str(recipe_path)!r}")
    env = resolve_variables(raw.variables, parse_recipe_args(recipe_args))
    mods = [resolve_modifier(m, env, i) for i, m in enumerate(raw.modifiers)]
    return Recipe(str(recipe_path), env, mods, raw.metadata)


# What SparseML does where acdc-exp's demo defaults differ, written into every imported
# config so that no demo default leaks into a recipe (README: AC/DC semantics)
SPARSEML_DENSE_PHASE = {"dense_phase_warmup_epochs": 0.0, "dead_channels": "regrow", "min_kept_per_channel": 0}
SPARSEML_TRAINER = {"bn_recalibration_batches": 0}


def recipe_to_config(recipe_path: PathLike, recipe_args: RecipeArgs = None) -> Dict[str, Any]:
    """The config sections a recipe determines, as a plain dict to merge over a TrainConfig
    (``recipe_sections`` of the loaded recipe)."""
    return recipe_sections(load_recipe(recipe_path, recipe_args))


def recipe_sections(recipe: Recipe) -> Dict[str, Any]:
    """``recipe_config`` and, from a Markdown model card, whether its training command starts
    from pretrained weights (``--pretrained True`` -> ``model.pretrained``): ``recipe=`` runs and
    ``acdc-recipe convert`` both read it here, so the card, its run and its experiment agree."""
    out = recipe_config(recipe)
    pretrained = card_training_flags(recipe.path).get("pretrained")
    if pretrained is not None:
        if pretrained.lower() not in ("true", "false"):
            raise ConfigError(
                f"recipe {recipe.path!r}: --pretrained {pretrained!r} in its training command; allowed: True, False"
            )
        out["model"] = {"pretrained": pretrained.lower() == "true"}
    return out


def recipe_config(recipe: Recipe) -> Dict[str, Any]:
    epochs = _epochs(recipe)
    out: Dict[str, Any] = {"trainer": {"epochs": epochs, **SPARSEML_TRAINER}}
    segments = _lr_segments(recipe.of_type(*LR), epochs)
    wd = _weight_decay(recipe.of_type("SetWeightDecayModifier"))
    out["lr_schedule"] = {"name": "recipe", "segments": segments, "weight_decay": wd} if segments else {"weight_decay": wd}
    initial_wd = [w["weight_decay"] for w in wd if w["start_epoch"] <= 0]
    if initial_wd:
        out["optimizer"] = {"weight_decay": initial_wd[-1]}
    out["sparsity"] = _sparsity(recipe.of_type(*PRUNING))
    out["quantization"] = _quantization(recipe.of_type("QuantizationModifier"))
    return out


def _only_one(mods: Sequence[Modifier], what: str) -> Optional[Modifier]:
    if len(mods) > 1:
        raise ConfigError(f"recipe has {len(mods)} {what} modifiers ({', '.join(m.type for m in mods)}); allowed: at most one")
    return mods[0] if mods else None


def _start(mod: Modifier) -> float:
    """SparseML's ``start_epoch: -1`` means "from the beginning"."""
    start = float(mod.number("start_epoch", 0.0))
    if start == -1:
        return 0.0
    if start < 0:
        raise ConfigError(f"{mod.type}.start_epoch={start} is negative; allowed: >= 0, or -1 for the start of training")
    return start


def _epochs(recipe: Recipe) -> int:
    mod = _only_one(recipe.of_type("EpochRangeModifier"), "EpochRangeModifier")
    if mod is None:
        raise ConfigError("recipe has no !EpochRangeModifier; allowed: exactly one, whose end_epoch sets trainer.epochs")
    end = mod.number("end_epoch")
    if _start(mod) != 0:
        raise ConfigError(f"EpochRangeModifier.start_epoch={mod.fields['start_epoch']} is not supported; allowed: 0 or -1")
    if end <= 0 or float(end) != int(end):
        raise ConfigError(f"EpochRangeModifier.end_epoch={end} is not a positive whole number of epochs")
    return int(end)


def _lr_segments(mods: Sequence[Modifier], epochs: int) -> List[Dict[str, Any]]:
    segs = []
    for mod in mods:
        start = _start(mod)
        if mod.type == "SetLearningRateModifier":
            lr = float(mod.number("learning_rate"))
            seg = LRSegment("constant", start, None, lr, lr)
        else:
            func = mod.fields["lr_func"]
            if func not in ("linear", "cosine"):
                raise ConfigError(f"LearningRateFunctionModifier.lr_func={func!r} is not supported; allowed: linear, cosine")
            end = float(mod.number("end_epoch"))
            end = float(epochs) if end == -1 else end  # SparseML: -1 = end of training
            seg = LRSegment(func, start, end, float(mod.number("init_lr")), float(mod.number("final_lr")))
        segs.append((start, mod.position, seg))  # LRSegment validates func, lrs and range
    segs.sort(key=lambda t: (t[0], t[1]))
    return [
        {"func": s.func, "start_epoch": s.start_epoch, "end_epoch": s.end_epoch, "init_lr": s.init_lr, "final_lr": s.final_lr}
        for _, _, s in segs
    ]


def _weight_decay(mods: Sequence[Modifier]) -> List[Dict[str, Any]]:
    items = []
    for mod in mods:
        seg = WeightDecaySegment(_start(mod), float(mod.number("weight_decay")))
        items.append((seg.start_epoch, mod.position, seg))
    items.sort(key=lambda t: (t[0], t[1]))
    return [{"start_epoch": s.start_epoch, "weight_decay": s.weight_decay} for _, _, s in items]


def _mask_type(mod: Modifier) -> str:
    """SparseML spellings of the same 1x4 block: ``block``, ``block4``, ``[1, 4]``."""
    value = mod.fields.get("mask_type", "unstructured")
    if value == [1, 4] or (isinstance(value, str) and value.strip().lower() in ("block", "block4")):
        return "block4"
    if not isinstance(value, str):
        raise ConfigError(f"{mod.type}.mask_type={value!r} is not supported; allowed: unstructured, block4, [1, 4], N:M")
    parse_mask_type(value)  # raises with the allowed list
    return value.strip().lower()


def _params(mod: Modifier) -> List[str]:
    """Exact SparseML names become torchvision names; globs, ``re:`` and ``__ALL_PRUNABLE__``
    are kept (the selection matches them against both namings). Duplicates are dropped."""
    value = mod.fields["params"]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(p, str) and p.strip() for p in value):
        raise ConfigError(f"{mod.type}.params={value!r} is not a list of parameter names; allowed: names or patterns")
    out: List[str] = []
    seen = set()
    dupes: List[str] = []
    for entry in value:
        entry = entry.strip()
        name = entry if entry.startswith("re:") else to_torchvision_name(entry)
        if name in seen:
            dupes.append(entry)
        else:
            seen.add(name)
            out.append(name)
    if dupes:
        warnings.warn(
            f"{mod.type}.params lists {len(dupes)} name(s) more than once; using each once "
            f"({len(out)} unique): {', '.join(dupes)}",
            stacklevel=3,
        )
    return out


def _fraction(mod: Modifier, name: str) -> float:
    value = float(mod.number(name))
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{mod.type}.{name}={value} is out of range; allowed: 0 <= {name} <= 1")
    return value


def _sparsity(mods: Sequence[Modifier]) -> Dict[str, Any]:
    mod = _only_one(mods, "pruning")
    if mod is None:
        return {"_target_": target_of(Dense)}
    if not mod.flag("leave_enabled", True):
        raise ConfigError(f"{mod.type}.leave_enabled=false is not supported; allowed: true (masks stay on after end_epoch)")
    if mod.type == "ACDCPruningModifier":
        head: Dict[str, Any] = {"_target_": target_of(Acdc), "sparsity": _fraction(mod, "compression_sparsity")}
    else:
        inter = mod.fields.get("inter_func", "cubic")
        if inter != "cubic":
            raise ConfigError(f"{mod.type}.inter_func={inter!r} is not supported; allowed: cubic")
        head = {
            "_target_": target_of(Gmp),
            "sparsity": _fraction(mod, "final_sparsity"),
            "init_sparsity": _fraction(mod, "init_sparsity"),
        }
    out: Dict[str, Any] = {
        **head,
        "mask_type": _mask_type(mod),
        "global_sparsity": mod.flag("global_sparsity", False),
        "start_epoch": _start(mod),
        "end_epoch": float(mod.number("end_epoch")),
        "update_frequency": float(mod.number("update_frequency")),
        "phases": None,  # the recipe's periodic rule, not explicit phases
    }
    if out["end_epoch"] <= out["start_epoch"]:
        raise ConfigError(f"{mod.type}.end_epoch={out['end_epoch']} must be greater than start_epoch={out['start_epoch']}")
    if out["update_frequency"] <= 0:
        raise ConfigError(f"{mod.type}.update_frequency={out['update_frequency']} must be > 0")
    if mod.type == "ACDCPruningModifier":
        # SparseML's momentum_buffer_reset zeroes every parameter's momentum ("all")
        out["reset_momentum"] = "all" if mod.flag("momentum_buffer_reset", True) else "none"
        out.update(SPARSEML_DENSE_PHASE)
    out["params"] = _params(mod)  # last: the long list
    return out


def _optional_epoch(mod: Modifier, name: str) -> Optional[float]:
    value = mod.fields.get(name)
    if value is None or value == -1:  # SparseML: None / -1 = never
        return None
    return float(mod.number(name))


def _quantization(mods: Sequence[Modifier]) -> Dict[str, Any]:
    mod = _only_one(mods, "QuantizationModifier")
    if mod is None:
        return {"_target_": target_of(NoQat)}
    end = mod.fields.get("end_epoch", -1)
    if end != -1:
        raise ConfigError(f"QuantizationModifier.end_epoch={end!r} is not supported; allowed: -1 (QAT stays on to the end)")
    subs = mod.fields["submodules"]
    if isinstance(subs, str):
        subs = [subs]
    if not isinstance(subs, list) or not subs or not all(isinstance(s, str) for s in subs):
        raise ConfigError(
            f"QuantizationModifier.submodules={subs!r} is not a list of module names; allowed: e.g. [input, sections]"
        )
    out: Dict[str, Any] = {
        "_target_": target_of(Qat),
        "start_epoch": _start(mod),
        "submodules": list(subs),
        "disable_observer_epoch": _optional_epoch(mod, "disable_quantization_observer_epoch"),
        "freeze_bn_stats_epoch": _optional_epoch(mod, "freeze_bn_stats_epoch"),
    }
    for name in ("disable_observer_epoch", "freeze_bn_stats_epoch"):
        if out[name] is not None and out[name] < out["start_epoch"]:
            raise ConfigError(f"QuantizationModifier {name}={out[name]} is before start_epoch={out['start_epoch']}")
    # SparseML's default is 8-bit activations (its int8 target, DeepSparse, wants VNNI)
    out["reduce_range"] = mod.flag("reduce_range", False)
    if mod.has("model_fuse_fn_name"):
        # SparseML: "no_fuse" skips conv-bn(-relu) fusion; any fuse function name fuses
        out["fuse"] = mod.fields["model_fuse_fn_name"] != "no_fuse"
    return out
