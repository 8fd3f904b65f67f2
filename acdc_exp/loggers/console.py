"""Prints evaluations, phase switches and mask updates as plain lines (tqdm-safe)."""

from __future__ import annotations

from typing import Any, Dict, Mapping

from omegaconf import DictConfig
from tqdm import tqdm

from acdc_exp.loggers.base import Logger
from acdc_exp.records import MaskUpdate
from acdc_exp.registries import LOGGERS


class ConsoleLogger(Logger):
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def _print(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text)

    def log_eval(self, metrics: Mapping[str, Any], step: int, epoch: float) -> None:
        parts = [f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()]
        self._print(f"[eval] epoch {epoch:.2f} step {step}: " + " ".join(parts))

    def log_mask_update(self, update: MaskUpdate, step: int) -> None:
        changed = "" if update.changed_fraction is None else f", {100 * update.changed_fraction:.2f}% of mask changed"
        drop = "" if update.drop_fraction is None else f", drop fraction {update.drop_fraction:.4f}"
        agreed = "" if update.checksum is None else f", checksum {update.checksum}"
        self._print(
            f"[masks] epoch {update.epoch:.2f} step {update.step}: recomputed at target {update.target_sparsity:.3f}, "
            f"global sparsity {update.global_sparsity:.4f}{changed}{drop}{agreed}"
        )

    def log_summary(self, summary: Dict[str, Any]) -> None:
        pass  # the CLI prints the summary

    def message(self, text: str) -> None:
        self._print(text)


@LOGGERS.register()
def console(cfg: DictConfig, **run: Any) -> ConsoleLogger:
    """logger=console: plain lines on the terminal (the run's values in ``run`` are not needed)."""
    return ConsoleLogger()
