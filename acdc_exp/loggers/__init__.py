"""Loggers: console lines, Weights & Biases, and plots (named ``loggers``, not the stdlib ``logging``).

Each logger registers in ``registries.LOGGERS`` (``none.py``, ``console.py``, ``wandb_logger.py``)
and ``configs/logger/<name>.yaml`` chooses it by ``_target_``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig

from acdc_exp.loggers.base import Logger, MultiLogger
from acdc_exp.loggers.console import ConsoleLogger
from acdc_exp.registries import LOGGERS


def opens_wandb_run(cfg: DictConfig) -> bool:
    """Does logger config ``cfg`` open a W&B run (whose id the run's summary records)?"""
    return bool(LOGGERS.variant(cfg).trait("opens_wandb_run", False))


def build_logger(
    cfg: DictConfig, *, run_dir: Path, config: Dict[str, Any], resume_id: Optional[str], is_main: bool, overrides: List[str] = ()
) -> Logger:
    """The logger ``cfg`` chooses, given the run's values. Only rank 0 logs; other ranks get a silent logger."""
    if not is_main:
        return Logger()
    return LOGGERS.build(cfg, run_dir=run_dir, config=config, resume_id=resume_id, overrides=list(overrides))


__all__ = ["Logger", "MultiLogger", "ConsoleLogger", "build_logger", "opens_wandb_run"]
