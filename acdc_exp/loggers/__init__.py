"""Loggers: console lines, Weights & Biases, and plots (named ``loggers``, not the stdlib ``logging``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig

from acdc_exp.errors import ConfigError
from acdc_exp.loggers.base import Logger, MultiLogger
from acdc_exp.loggers.console import ConsoleLogger

KINDS = ("none", "console", "wandb")


def opens_wandb_run(cfg: DictConfig) -> bool:
    """Does logger config ``cfg`` open a W&B run (whose id the run's summary records)?"""
    return cfg.kind == "wandb"


def build_logger(
    cfg: DictConfig, *, run_dir: Path, config: Dict[str, Any], resume_id: Optional[str], is_main: bool, overrides: List[str] = ()
) -> Logger:
    """``cfg`` is LoggerConfig. Only rank 0 logs; other ranks get a silent logger."""
    if cfg.kind not in KINDS:
        raise ConfigError(f"logger.kind={cfg.kind!r} is not supported; allowed: {', '.join(KINDS)}")
    if not is_main or cfg.kind == "none":
        return Logger()
    console = ConsoleLogger()
    if cfg.kind == "console":
        return console
    from acdc_exp.loggers.wandb_logger import WandbLogger  # wandb only for W&B runs

    return MultiLogger(console, WandbLogger(cfg, run_dir=run_dir, config=config, resume_id=resume_id, overrides=list(overrides)))


__all__ = ["Logger", "MultiLogger", "ConsoleLogger", "build_logger", "opens_wandb_run"]
