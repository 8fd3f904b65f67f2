"""logger=none: no logging (tests, dry runs)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from acdc_exp.loggers.base import Logger
from acdc_exp.registries import LOGGERS


@LOGGERS.register()
def silent(cfg: DictConfig, **run: Any) -> Logger:
    return Logger()
