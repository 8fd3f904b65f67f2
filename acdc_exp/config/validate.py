"""Range and consistency checks that the typed schema cannot express. Each failure is a
one-line ConfigError naming the bad value and what is allowed."""
from __future__ import annotations

from acdc_exp.errors import ConfigError
from acdc_exp.sparsity.masks import check_sparsity
from acdc_exp.sparsity.sparsifier import DEAD_CHANNELS, RESET_MOMENTUM, check_choice, check_count

DEVICES = ("auto", "cpu", "cuda")
MASK_TYPES = ("unstructured", "block4")


def _mask_type_ok(mask_type: str) -> bool:
    if mask_type in MASK_TYPES:
        return True
    n, _, m = mask_type.partition(":")
    return n.isdigit() and m.isdigit() and 0 < int(n) < int(m)


def validate(cfg) -> None:
    t, o, d, s, q = cfg.trainer, cfg.optimizer, cfg.data, cfg.sparsity, cfg.quantization
    if t.epochs <= 0:
        raise ConfigError(f"trainer.epochs={t.epochs} must be a positive integer")
    if t.device not in DEVICES:
        raise ConfigError(f"trainer.device={t.device!r} is not allowed; allowed: {', '.join(DEVICES)}")
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
    if o.weight_decay < 0:
        raise ConfigError(f"optimizer.weight_decay={o.weight_decay} is negative; allowed: >= 0")
    if not 0.0 <= o.momentum < 1.0:
        raise ConfigError(f"optimizer.momentum={o.momentum} is out of range; allowed: 0 <= momentum < 1")
    for i, seg in enumerate(cfg.lr_schedule.segments):
        for key in ("init_lr", "final_lr"):
            if seg[key] < 0:
                raise ConfigError(f"lr_schedule.segments[{i}].{key}={seg[key]} is negative; allowed: lr >= 0")
    if d.batch_size <= 0 or d.val_batch_size <= 0:
        raise ConfigError(f"data.batch_size={d.batch_size}, data.val_batch_size={d.val_batch_size}: must be > 0")
    if d.num_workers is not None and d.num_workers < 0:
        raise ConfigError(f"data.num_workers={d.num_workers} must be >= 0")
    if s.method not in ("acdc", "gmp", "dense"):
        raise ConfigError(f"sparsity.method={s.method!r} is not supported; allowed: acdc, gmp, dense")
    if not 0.0 <= s.sparsity <= 1.0:
        raise ConfigError(f"sparsity.sparsity={s.sparsity} is out of range; allowed: 0 <= sparsity <= 1")
    if not _mask_type_ok(s.mask_type):
        raise ConfigError(f"sparsity.mask_type={s.mask_type!r} is not supported; allowed: unstructured, block4, N:M (e.g. 2:4)")
    if ":" in s.mask_type and s.method != "dense":
        if s.method == "gmp":
            raise ConfigError(f"sparsity.mask_type={s.mask_type} has a fixed sparsity; a GMP ramp needs unstructured or block4")
        check_sparsity(float(s.sparsity), s.mask_type)  # N:M fixes sparsity at 1 - N/M
    check_choice("reset_momentum", s.reset_momentum, RESET_MOMENTUM)
    check_choice("dead_channels", s.dead_channels, DEAD_CHANNELS)
    check_count("min_kept_per_channel", s.min_kept_per_channel)
    if q.enabled and q.num_bits != 8:
        raise ConfigError(f"quantization.num_bits={q.num_bits} is not supported; allowed: 8")
