"""Rebuild the models a run saved (dense / final / int8 members) from its checkpoint files.

Every member checkpoint holds the full resolved train config, so the architecture comes from
``config["model"]`` and, when the quantizer state says prepared, the QAT structure from
``config["quantization"]``. ``final_int8.pt`` holds only the int8 state; its config is read
from ``final.pt`` beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

from omegaconf import OmegaConf
from torch import nn

from acdc_exp import run_layout as layout
from acdc_exp.errors import CheckpointError, ConfigError, check_choice
from acdc_exp.models import model_from_config
from acdc_exp.quantization.base import NoQuantization
from acdc_exp.quantization.qat import QATController, convert_to_int8
from acdc_exp.quantization.qconfig import quiet_ao
from acdc_exp.registries import QUANTIZATION
from acdc_exp.training import checkpoint as ckpt

MEMBERS = tuple(layout.MEMBER_FILES)


def member_path(checkpoint: str, member: str = "final") -> Path:
    """The file for ``member`` of a run dir, or ``checkpoint`` itself when it is a file."""
    check_choice("member", member, MEMBERS)
    return layout.find_member(checkpoint, member)


def _config_of(state: Dict[str, Any], path: Path) -> Dict[str, Any]:
    cfg = state.get("config")
    if isinstance(cfg, dict) and "model" in cfg:
        return cfg
    sibling = path.parent / layout.MEMBER_FILES["final"]  # the int8 member stores no config
    if sibling.is_file() and sibling != path:
        with quiet_ao():
            cfg = ckpt.load(sibling).get("config")
        if isinstance(cfg, dict) and "model" in cfg:
            return cfg
    raise CheckpointError(f"checkpoint={str(path)!r} holds no train config (and no final.pt beside it has one)")


def is_int8_state(model_state: Dict[str, Any]) -> bool:
    """Converted int8 modules save quantized weight tensors."""
    return any(getattr(v, "is_quantized", False) for v in model_state.values())


def build_float_model(config: Dict[str, Any]) -> nn.Module:
    """The run's model as its training built it (the same builder), with random weights: the
    checkpoint holds the weights; the pretrained file it started from is never re-read."""
    return model_from_config(config["model"], start_weights=False)


def quantizer_for(config: Dict[str, Any]) -> "QATController | NoQuantization":
    return QUANTIZATION.build(OmegaConf.create(config["quantization"])).controller()


def int8_engine_for(config: Dict[str, Any]) -> str:
    """The engine an int8 member is scored with on this machine: the rule of the run's own
    int8 evaluation (QATController.int8_engine), so acdc-eval reproduces its score."""
    quantizer = quantizer_for(config)
    engine = quantizer.int8_engine()
    if engine is None:
        raise ConfigError(
            f"the int8 kernels of quantization.backend={quantizer.backend} saturate on this CPU (8-bit activations, "
            "no VNNI/AMX) and this torch has no qnnpack engine: no exact int8 evaluation here"
        )
    return engine


def _load(model: nn.Module, state: Dict[str, Any], path: Path) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint={str(path)!r} does not fit the model its config describes: {first}") from None


def load_member(checkpoint: str, member: str = "final") -> Tuple[nn.Module, Dict[str, Any], Dict[str, Any]]:
    """(model in eval mode on CPU, the member's checkpoint dict, the train config).

    dense/final/last give a float model, or the fake-quantized QAT model when the member was
    saved during QAT; int8 gives the converted int8 model."""
    path = member_path(checkpoint, member)
    with quiet_ao():  # unpickling int8 tensors warns that quantized dtypes are deprecated
        state = ckpt.load(path)
    config = _config_of(state, path)
    model = build_float_model(config)
    if is_int8_state(state["model"]):  # decided by content: a .pt path may be any member
        quantizer = quantizer_for(config)
        quantizer.prepare(model)
        # packing happens on load, for the engine switched on here
        model = convert_to_int8(model, int8_engine_for(config))
    elif state.get("quantizer", {}).get("prepared"):
        quantizer_for(config).prepare(model)
    _load(model, state["model"], path)
    return model.eval(), state, config
