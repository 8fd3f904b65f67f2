"""Checks of the composed config before anything runs; each failure is a one-line
ConfigError naming the bad value and what is allowed.

Each rule lives once, with what it governs. The pure objects own theirs and this precheck
builds them: the Plan (epochs, learning-rate and weight-decay schedules), and through it the
sparsity method (range, mask type, phases, its own choices) and the quantization variant (QAT
epoch order, bits). Stated here are only the settings that no such object owns (trainer,
data and optimizer values read directly).
"""

from __future__ import annotations

from omegaconf import DictConfig

from acdc_exp.errors import ConfigError, check_choice
from acdc_exp.models.sync_bn import sync_batchnorm_choice
from acdc_exp.plan import Plan

DEVICES = ("auto", "cpu", "cuda")


def validate(cfg: DictConfig) -> None:
    t, o, d = cfg.trainer, cfg.optimizer, cfg.data
    check_choice("trainer.device", t.device, DEVICES)
    sync_batchnorm_choice(t.sync_batchnorm)
    if t.eval_every_epochs <= 0 or t.checkpoint_every_epochs <= 0:
        raise ConfigError("trainer.eval_every_epochs and trainer.checkpoint_every_epochs must be >= 1")
    if t.max_steps is not None and t.max_steps <= 0:
        raise ConfigError(f"trainer.max_steps={t.max_steps} must be > 0 or null")
    if t.bn_recalibration_batches < 0:
        raise ConfigError(f"trainer.bn_recalibration_batches={t.bn_recalibration_batches} is negative; allowed: an integer >= 0")
    if not 0.0 <= t.label_smoothing < 1.0:
        raise ConfigError(f"trainer.label_smoothing={t.label_smoothing} is out of range; allowed: 0 <= x < 1")
    if o.lr < 0:
        raise ConfigError(f"optimizer.lr={o.lr} is negative; allowed: lr >= 0")
    if not 0.0 <= o.momentum < 1.0:
        raise ConfigError(f"optimizer.momentum={o.momentum} is out of range; allowed: 0 <= momentum < 1")
    if d.batch_size <= 0 or d.val_batch_size <= 0:
        raise ConfigError(f"data.batch_size={d.batch_size}, data.val_batch_size={d.val_batch_size}: must be > 0")
    if d.num_workers is not None and d.num_workers < 0:
        raise ConfigError(f"data.num_workers={d.num_workers} must be >= 0")
    # the sparsity method's and the quantization variant's own rules: built with the plan
    Plan.from_config(cfg, steps_per_epoch=1)  # pure and instant
