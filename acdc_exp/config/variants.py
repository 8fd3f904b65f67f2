"""Type the registries' groups of a composed config by the variant each one chooses.

A group whose variants are registered (``acdc_exp/registries.py``: model, data,
lr_schedule, sparsity, quantization, logger) composes untyped: its schema depends on its ``_target_``. Here each
such node is merged onto its variant's schema: defaults filled, types checked, and a key the
variant does not have refused in one line. Every command does it right after composing
(``compose_config``, ``hydra_command``), before any value is read.
"""

from __future__ import annotations

from omegaconf import DictConfig, open_dict

from acdc_exp.registries import GROUPS


def typed_groups(cfg: DictConfig) -> DictConfig:
    """``cfg`` with each registry group present merged onto its variant's schema (in place)."""
    with open_dict(cfg):
        for group, registry in GROUPS.items():
            if group in cfg:
                cfg[group] = registry.typed(cfg[group])
    return cfg
