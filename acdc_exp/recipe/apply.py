"""Merging a recipe into a composed Hydra config, with command-line overrides still winning.

Precedence, lowest to highest: config groups and experiment < ``recipe`` < explicit
``key=value`` overrides on the command line. So ``recipe=R trainer.epochs=2`` trains the
recipe's schedule for 2 epochs (the recipe's epoch numbers are not rescaled: use
``recipe_args`` for that, e.g. ``recipe_args='{num_epochs: 150}'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Collection, Dict, List, Optional, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_original_cwd
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from acdc_exp.errors import ConfigError
from acdc_exp.models.factory import model_label, random_weights_note
from acdc_exp.recipe.convert import recipe_to_config
from acdc_exp.registry import variant_name

# composes the config with {group: option} choices
ComposeGroups = Callable[[Dict[str, str]], DictConfig]
# overrides that never re-apply: they pick the recipe itself
_RECIPE_KEYS = ("recipe", "recipe_args")


def resolve_recipe_path(path: str) -> Path:
    """``path`` as given, else relative to the directory Hydra was launched from."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    try:
        alt = Path(get_original_cwd()) / p
        if alt.exists():
            return alt
    except ValueError:  # not inside a Hydra app
        pass
    return p


def value_override_keys(cfg: DictConfig, cli_overrides: Sequence[str]) -> List[str]:
    """The config keys the command line set explicitly (``a.b=1``, ``+a.b=1``, ``++a.b=1``).

    Skipped: group choices (``model=resnet50``: the key names a config node and the value is a
    string), ``hydra.*``, deletions, package renames, keys the config lacks (``experiment=...``)
    and ``recipe``/``recipe_args``.
    """
    try:
        parsed = OverridesParser.create().parse_overrides(list(cli_overrides))
    except Exception as err:  # Hydra's OverrideParseException, raised only for bad syntax
        raise ConfigError(f"command-line overrides {list(cli_overrides)} cannot be parsed ({err})") from None
    keys: List[str] = []
    for ov in parsed:
        key = ov.key_or_group
        if ov.is_delete() or ov.package is not None or "/" in key or key.split(".")[0] in ("hydra",) + _RECIPE_KEYS:
            continue
        node = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if node is None and not _has_key(cfg, key):
            continue
        if isinstance(node, DictConfig) and isinstance(ov.value(), str):
            continue  # a config group choice
        keys.append(key)
    return keys


def _has_key(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    return isinstance(node, DictConfig) and leaf in node


def recipe_variants(sections: Dict[str, Any]) -> Dict[str, str]:
    """The group options a recipe implies: its pruning method, QAT or not, and explicit lr
    segments (``configs/<group>/<option>.yaml``; a registered variant's YAML is named as the
    variant, ``configs/sparsity/acdc.yaml`` for ``sparsity/methods/acdc.py``)."""
    out = {group: variant_name(sections[group]["_target_"]) for group in ("sparsity", "quantization")}
    if "segments" in sections["lr_schedule"]:
        out["lr_schedule"] = "segments"
    return out


def _swap_variants(cfg: DictConfig, options: Dict[str, str], compose_groups: ComposeGroups) -> DictConfig:
    """``cfg`` with each group whose variant the recipe changes (an AC/DC config, a GMP recipe)
    taken from that option's YAML, which supplies what the recipe leaves unsaid."""
    fresh = compose_groups(options)
    out = cfg.copy()
    for group in options:
        if OmegaConf.get_type(out[group]) is not OmegaConf.get_type(fresh[group]):  # the variant's schema
            out[group] = fresh[group]
    return out


def apply_recipe(
    cfg: DictConfig, cli_overrides: Optional[Sequence[str]] = None, compose_groups: Optional[ComposeGroups] = None
) -> DictConfig:
    """``cfg`` with the recipe named by ``cfg.recipe`` merged in (unchanged when it is null).

    ``cli_overrides`` are the command line's overrides (``HydraConfig.get().overrides.task``
    in an app); their values, as Hydra composed them into ``cfg``, are put back after the
    merge so explicit command-line values win over the recipe. The result is merged onto the
    structured schema, so it validates like any composed config. ``compose_groups`` composes
    the config with given group options (``config.compose``); with it a recipe can change a
    group's variant (``recipe_variants``). A torchvision ResNet that neither the recipe nor the
    command line says to start from pretrained weights is a ConfigError (``model.pretrained``).
    """
    recipe = cfg.get("recipe")
    if not recipe:
        return cfg
    path = resolve_recipe_path(str(recipe))
    sections = recipe_to_config(path, cfg.get("recipe_args"))
    keep = {key: OmegaConf.select(cfg, key) for key in value_override_keys(cfg, cli_overrides or [])}
    try:
        base = _swap_variants(cfg, recipe_variants(sections), compose_groups) if compose_groups else cfg
        merged = OmegaConf.merge(base, sections)
        for key, value in keep.items():
            OmegaConf.update(merged, key, value, merge=False, force_add=True)
    except OmegaConfBaseException as err:
        msg = str(err).splitlines()[0]
        raise ConfigError(f"recipe {str(recipe)!r} does not fit the config schema ({msg})") from None
    _require_pretrained_decision(str(recipe), sections, keep, merged)
    return merged


def _require_pretrained_decision(recipe: str, sections: Dict[str, Any], explicit: Collection[str], cfg: DictConfig) -> None:
    """Refuse a recipe run that would train a torchvision ResNet from random weights when
    nobody chose that: a bare ``.yaml`` recipe has no training command to say ``--pretrained``,
    and SparseML's recipes assume dense ImageNet weights, so a silent from-scratch start
    would spend a whole schedule on the wrong thing."""
    if "model" in sections or "model.pretrained" in explicit:
        return  # the model card's command or the command line decided
    if random_weights_note(cfg.model) is None:
        return  # a model without pretrained weights, or pretrained=true from an experiment
    raise ConfigError(
        f"recipe {recipe!r} does not say whether model {model_label(cfg.model)} starts from pretrained weights "
        "(only a Markdown model card's training command does); allowed: model.pretrained=true "
        "(dense ImageNet weights from model.weights, as SparseML's model cards train) or model.pretrained=false (random weights)"
    )
