"""Checks of the composed config before anything runs; each failure is a one-line
ConfigError naming the bad value and what is allowed.

Each rule lives once, with what it governs. The pure objects own theirs and this precheck
builds them: the Plan (epochs, learning-rate and weight-decay schedules, sparsity method,
range and phases, QAT epoch order), the mask type (``sparsity.masks``) and the Sparsifier's
choices. Stated here are only the settings that no such object owns (trainer, data,
optimizer and quantization values read directly).
"""

from __future__ import annotations

from omegaconf import DictConfig

from acdc_exp.errors import ConfigError, check_choice
from acdc_exp.models.sync_bn import sync_batchnorm_choice
from acdc_exp.plan import Plan
from acdc_exp.sparsity.masks import check_sparsity, parse_mask_type
from acdc_exp.sparsity.sparsifier import DEAD_CHANNELS, RESET_MOMENTUM, check_count

DEVICES = ("auto", "cpu", "cuda")


def validate(cfg: DictConfig) -> None:
    t, o, d, s, q = cfg.trainer, cfg.optimizer, cfg.data, cfg.sparsity, cfg.quantization
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
    if q.enabled and not hasattr(q, "num_bits"):
        raise ConfigError("quantization.enabled=true needs the QAT settings; allowed: quantization=qat")
    if q.enabled and q.num_bits != 8:
        raise ConfigError(f"quantization.num_bits={q.num_bits} is not supported; allowed: 8")
    Plan.from_config(cfg, steps_per_epoch=1)  # the schedules' own rules; pure and instant
    mask = _sparsity_mask_type(s.mask_type)
    if mask.kind == "nm" and s.method != "dense":
        if s.method == "gmp":
            raise ConfigError(f"sparsity.mask_type={s.mask_type} has a fixed sparsity; a GMP ramp needs unstructured or block4")
        check_sparsity(float(s.sparsity), s.mask_type)  # N:M fixes sparsity at 1 - N/M
    if hasattr(s, "reset_momentum"):  # AC/DC's knobs (config/groups.py: AcdcSparsityConfig)
        check_choice("sparsity.reset_momentum", s.reset_momentum, RESET_MOMENTUM)
        check_choice("sparsity.dead_channels", s.dead_channels, DEAD_CHANNELS)
    check_count("min_kept_per_channel", s.min_kept_per_channel)


def _sparsity_mask_type(value: str):
    try:
        return parse_mask_type(value)
    except ConfigError as exc:  # name the config key, as every message here does
        raise ConfigError(f"sparsity.{exc}") from None
