"""Structured configs: the typed roots of the commands' configs (train, eval, export). The
optimizer, trainer and paths schemas are in ``groups.py``; the registries' groups have theirs
beside their builders (``registries.py``).

Because each group's YAML is merged onto one of these dataclasses, a typo in an override
(``optimizer.lrr=0.1``) or a wrong type (``trainer.epochs=ten``) is a Hydra error instead of a
silently ignored key. Range checks that types cannot express live in ``validate.py``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from acdc_exp.config.groups import OptimizerConfig, PathsConfig, TrainerConfig
from acdc_exp.data.beton_names import beton_path
from acdc_exp.errors import ConfigError
from acdc_exp.registry import variant_name


@dataclass
class TrainConfig:
    # the registries' groups: typed by their variant's schema once composed (config/variants.py)
    model: Any = MISSING
    data: Any = MISSING
    lr_schedule: Any = MISSING
    sparsity: Any = MISSING
    quantization: Any = MISSING
    logger: Any = MISSING
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = MISSING
    # a SparseML recipe (YAML, or Markdown with a YAML fence) that sets the schedule
    recipe: Optional[str] = None
    recipe_args: Optional[Any] = None
    experiment_name: str = MISSING
    # set by sweeps/*.yaml; names the W&B group of a multirun
    sweep_name: Optional[str] = None


@dataclass
class EvalConfig(TrainConfig):
    """``acdc-eval``: the train config (its overrides apply to the evaluation) and what to evaluate."""

    checkpoint: str = MISSING  # a run dir or a .pt file
    member: str = MISSING  # final | dense | int8 | last


@dataclass
class ScheduleOutputConfig:
    format: str = MISSING  # table (per epoch) | json (per step)
    steps_per_epoch: Optional[int] = MISSING  # null: the run's own count where known (data/epoch_size.py)
    plot: Optional[str] = MISSING  # a PNG path


@dataclass
class ScheduleConfig(TrainConfig):
    """``acdc-schedule``: the train config and how to show its plan."""

    schedule: ScheduleOutputConfig = field(default_factory=ScheduleOutputConfig)


@dataclass
class OnnxVersionsConfig:
    # null: the exporter's default (deploy/onnx_compat.py)
    opset_fp32: Optional[int] = MISSING
    opset_int8: Optional[int] = MISSING
    ir_version: Optional[int] = MISSING


@dataclass
class BenchConfig:
    enabled: bool = MISSING
    threads: int = MISSING
    batch: int = MISSING
    repeats: int = MISSING
    batch_repeats: int = MISSING
    deepsparse: str = MISSING  # auto | off | required


@dataclass
class ExportConfig:
    """``acdc-export``: which members, in which form, checked how, and the optional speed report."""

    checkpoint: str = MISSING
    member: str = MISSING  # all | dense | final
    format: str = MISSING  # qdq | qoperator
    out: Optional[str] = MISSING  # null: <run>/export
    inputs: str = MISSING  # random | val
    batch: int = MISSING
    seed: int = MISSING
    onnx: OnnxVersionsConfig = field(default_factory=OnnxVersionsConfig)
    benchmark: BenchConfig = field(default_factory=BenchConfig)


# Each command's root schema, picked by its config's first default (``schema: train`` ...).
SCHEMAS = {"train": TrainConfig, "eval": EvalConfig, "schedule": ScheduleConfig, "export": ExportConfig}


# torchrun's rendezvous id when --rdzv-id is not given (and not --standalone, which draws one)
TORCHRUN_DEFAULT_ID = "none"


def torchrun_run_id() -> Optional[str]:
    """torchrun's rendezvous id when this process is one of several ranks, else None.
    ConfigError for torchrun's default id: every launch without ``--rdzv-id`` shares it, so
    their run dirs would be one and ``resume=auto`` would continue another run's state."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if not run_id or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    if run_id == TORCHRUN_DEFAULT_ID:
        raise ConfigError(
            f"torchrun gave no rendezvous id (TORCHELASTIC_RUN_ID={run_id}); allowed: torchrun --rdzv-id=<a name unique "
            "to this run> (the same one to resume it), --standalone on one node, or hydra.run.dir=<the run dir>"
        )
    return run_id


def run_stamp(fmt: str) -> str:
    """The leaf of a run dir: the local time as ``fmt``, or under torchrun (several ranks, each
    composing its own config a moment apart) ``torchrun_<rendezvous id>``, which every rank of
    the job shares and a restart with the same ``--rdzv-id`` finds again (resume)."""
    run_id = torchrun_run_id()
    if run_id:
        return f"torchrun_{run_id}"
    return datetime.now().strftime(fmt)


def recipe_stem(recipe: Optional[str], default: str) -> str:
    """The name a recipe run takes (``recipes/resnet50_x.md`` -> ``resnet50_x``), or ``default``
    without a recipe. Resolved with the rest of the config, so the run dir, which Hydra builds
    before the recipe is read, carries it too. Characters other than letters, digits, ``_.-``
    become ``_``: the name is a folder and a W&B run name."""
    if not recipe:
        return default
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(str(recipe)).stem) or default


def epochs_of(part: float, whole: float, *, _root_: Any) -> float:
    """``part`` epochs of a ``whole``-epoch schedule, scaled to ``trainer.epochs``: the demo's
    schedule keeps its shape at any length (``trainer.epochs=1`` still runs every phase)."""
    return float(part) * float(_root_.trainer.epochs) / float(whole)


def register_configs() -> None:
    """Register the schemas so the configs can name them in their defaults lists (``schema:
    train``), the ``run_stamp`` resolver the run dir uses and the ``beton_path`` resolver
    that names the ImageNet .beton files as ``acdc-data write`` does; ``recipe_stem`` names a
    recipe run (train.yaml's experiment_name); ``epochs_of`` scales the demo's schedule;
    ``variant`` names a registered variant by its ``_target_`` (``registry.variant_name``)."""
    if not OmegaConf.has_resolver("run_stamp"):
        OmegaConf.register_new_resolver("run_stamp", run_stamp, use_cache=True)
    if not OmegaConf.has_resolver("beton_path"):
        OmegaConf.register_new_resolver("beton_path", beton_path)
    if not OmegaConf.has_resolver("recipe_stem"):
        OmegaConf.register_new_resolver("recipe_stem", recipe_stem)
    if not OmegaConf.has_resolver("variant"):
        OmegaConf.register_new_resolver("variant", variant_name)
    if not OmegaConf.has_resolver("epochs_of"):
        OmegaConf.register_new_resolver("epochs_of", epochs_of)

    cs = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        cs.store(group="schema", name=name, node=node, package="_global_")
