"""Evaluate a saved member of a run: top-1/top-5 on the validation set and its size on disk.

The architecture comes from the config saved in the checkpoint; the data is the run's own
data config unless ``data=...``/``data.*=...`` overrides are given (any other Hydra override
of the train config also applies). Size on disk is the member's state dict as torch.save
writes it, raw and gzip'ed: pruned weights are exact zeros, which compress.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
from typing import Any, Dict, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from acdc_exp.config.compose import compose_config
from acdc_exp.data import build_data
from acdc_exp.data.datasets.files import Files
from acdc_exp.errors import ConfigError
from acdc_exp.quantization.float_view import is_prepared
from acdc_exp.registries import DATA
from acdc_exp.registry import target_of
from acdc_exp.runs.members import int8_engine_for, is_int8_state, load_member, member_path
from acdc_exp.training.metrics import evaluate
from acdc_exp.training.setup import resolve_device


def state_dict_size(state: Dict[str, Any]) -> Dict[str, int]:
    """Bytes of ``torch.save(state)``, raw and gzip'ed (level 6)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    raw = buf.getvalue()
    return {"raw_bytes": len(raw), "gzip_bytes": len(gzip.compress(raw, compresslevel=6))}


def _group_override(overrides: Sequence[str]) -> bool:
    """True when ``data=NAME`` picks another data config group."""
    return any(o.lstrip("+").split("=", 1)[0] == "data" for o in overrides)


def compose_for_member(overrides: Sequence[str], saved: Dict[str, Any], cfg: Optional[DictConfig] = None) -> DictConfig:
    """The train config a saved run is evaluated with: ``cfg`` (default: the train config
    composed with ``overrides``) whose data config is the run's own (from the checkpoint) with
    the ``data.*`` overrides on top, unless ``data=NAME`` names another group."""
    if cfg is None:
        cfg = compose_config(list(overrides))
    if not _group_override(overrides) and "data" in saved:
        fields = OmegaConf.from_dotlist([o for o in overrides if o.startswith("data.")])
        # typed by the saved dataset's own variant (Fashion-MNIST's source_dir...)
        with open_dict(cfg):
            cfg.data = DATA.typed(OmegaConf.merge(_with_variant(saved["data"]), fields.get("data", {})))
    return cfg


# what a run saved before these data keys existed used (they came with their defaults, 2026-12-07)
SAVED_BEFORE = {"eval_split": "val", "crop_padding": 0}


def _with_variant(saved: Dict[str, Any]) -> Dict[str, Any]:
    """A saved data config with its ``_target_`` and every key its variant has. A run saved
    before datasets had variants (2026-12-08) named its data option by ``name``: that option's
    variant, with the saved keys the variant still has (the rest were null paths of built-in
    datasets); given paths made any dataset one of files."""
    saved = {**SAVED_BEFORE, **saved}
    if "_target_" in saved:
        return saved
    target = target_of(Files)
    if saved.get("train_path") is None and saved.get("val_path") is None:
        try:
            target = compose_config([f"data={saved.get('name')}"]).data._target_
        except ConfigError:  # no such option: a dataset given by its files
            pass
    keys = {f.name for f in dataclasses.fields(DATA.variant({"_target_": target}).schema)}
    return {"_target_": target, **{k: v for k, v in saved.items() if k in keys}}


def evaluate_member(cfg: DictConfig, overrides: Sequence[str]) -> Dict[str, Any]:
    """Evaluate the member ``cfg`` (configs/eval.yaml, composed) names; ``overrides`` are the
    command line's, which say whether the run's own data config is kept. Returns metrics,
    sizes and what was evaluated."""
    if OmegaConf.is_missing(cfg, "checkpoint"):
        raise ConfigError("checkpoint= is required (a run dir or a .pt file)")
    checkpoint, member = str(cfg.checkpoint), str(cfg.member)
    path = member_path(checkpoint, member)
    model, state, saved = load_member(str(path), member)
    cfg = compose_for_member(overrides, saved, cfg)
    int8 = is_int8_state(state["model"])
    kind = "int8" if int8 else ("fake-quant (QAT)" if is_prepared(model) else "float")
    device = torch.device("cpu") if int8 else resolve_device(str(cfg.trainer.device))
    if cfg.trainer.num_threads:
        torch.set_num_threads(int(cfg.trainer.num_threads))
    classes = int(saved["model"]["num_classes"])  # every model config has it (registries.ModelConfig)
    if int(cfg.data.num_classes) != classes:
        raise ConfigError(f"data.num_classes={cfg.data.num_classes} but the checkpoint's model has {classes} classes")
    data = build_data(cfg.data, data_cache=str(cfg.paths.data_cache), device=device, seed=int(cfg.seed))
    model = model.to(device)
    metrics = evaluate(model, data.val_batches(), data.prepare, device, limit=cfg.data.limit_val_batches)
    return {
        "checkpoint": str(path),
        "member": member,
        "kind": kind,
        # the engine load_member converted with (an int8 member only): the run's exact rule
        **({"int8_engine": int8_engine_for(saved)} if int8 else {}),
        "data": str(cfg.data.name),
        "device": str(device),
        **metrics,
        "size": state_dict_size(state["model"]),
        "file_bytes": path.stat().st_size,
    }
