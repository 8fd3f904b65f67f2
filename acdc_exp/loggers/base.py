"""The logger interface the trainer talks to; subclasses send the records somewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from acdc_exp.records import MaskUpdate


class Logger:
    """Does nothing: ``logger=none``. Every method is a safe no-op to override."""

    run_id: Optional[str] = None

    def log_step(self, metrics: Mapping[str, Any], step: int) -> None:
        """Throttled per-step training metrics (loss, top1, lr, wd, img/s, phase)."""

    def log_eval(self, metrics: Mapping[str, Any], step: int, epoch: float) -> None:
        """Validation metrics, keyed like ``val/dense/top1``."""

    def log_mask_update(self, update: MaskUpdate, step: int) -> None:
        """Per-layer and global sparsity, and mask stability, at a mask recomputation."""

    def log_image(self, key: str, path: Path, step: Optional[int] = None) -> None:
        pass

    def log_summary(self, summary: Dict[str, Any]) -> None:
        pass

    def message(self, text: str) -> None:
        """A human-readable line (phase switches, checkpoint writes)."""

    def finish(self) -> None:
        pass


class MultiLogger(Logger):
    """Fan out to several loggers (console + W&B)."""

    def __init__(self, *loggers: Logger) -> None:
        self.loggers = list(loggers)

    @property
    def run_id(self) -> Optional[str]:  # type: ignore[override]
        return next((lg.run_id for lg in self.loggers if lg.run_id), None)

    def log_step(self, metrics: Mapping[str, Any], step: int) -> None:
        for lg in self.loggers:
            lg.log_step(metrics, step)

    def log_eval(self, metrics: Mapping[str, Any], step: int, epoch: float) -> None:
        for lg in self.loggers:
            lg.log_eval(metrics, step, epoch)

    def log_mask_update(self, update: MaskUpdate, step: int) -> None:
        for lg in self.loggers:
            lg.log_mask_update(update, step)

    def log_image(self, key: str, path: Path, step: Optional[int] = None) -> None:
        for lg in self.loggers:
            lg.log_image(key, path, step)

    def log_summary(self, summary: Dict[str, Any]) -> None:
        for lg in self.loggers:
            lg.log_summary(summary)

    def message(self, text: str) -> None:
        for lg in self.loggers:
            lg.message(text)

    def finish(self) -> None:
        for lg in self.loggers:
            lg.finish()
