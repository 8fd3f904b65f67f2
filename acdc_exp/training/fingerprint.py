"""A run's fingerprint: the config values that define what it trains, as one flat mapping.

Every checkpoint carries it, and a resume compares it with the run's own, so ``resume=auto``
never continues another run's ``last.pt`` (two launches that share a run dir, a sweep member
pointed at the wrong folder). Where files live, how data loads, how the run logs and how fast
it goes are not part of it: a requeue on other nodes, with other paths or worker counts, or a
changed evaluation batch continues the same run.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from omegaconf import Container, DictConfig, OmegaConf

from acdc_exp.errors import CheckpointError

# what is trained: the model, the data and its augmentation (global batch included), the
# optimizer and lr schedule, the sparsity and quantization schedules, the seed and the length
DEFINING = (
    "model",
    "data",
    "optimizer",
    "lr_schedule",
    "sparsity",
    "quantization",
    "seed",
    "trainer.epochs",
    "trainer.label_smoothing",  # the loss
    "trainer.bn_recalibration_batches",  # the BatchNorm statistics every evaluation (and the members) use
)
# under those: where files are and how they load (requeues move them), or evaluation only
NOT_DEFINING = frozenset(
    {
        "model.weights",
        "optimizer.fused",  # how the step runs, not what it computes
        "lr_schedule.name",  # a label
        "data.train_path",
        "data.val_path",
        "data.beton_dir",  # where the files are, not what they hold
        "data.train_images",  # a hint for acdc-schedule
        "data.cache_dir",
        "data.source_dir",  # where Fashion-MNIST's IDX files are
        "data.num_workers",
        "data.os_cache",
        "data.batches_ahead",
        "data.val_batch_size",
        "data.limit_val_batches",
    }
)
_ABSENT = "<absent>"


def _flatten(value: Any, prefix: str, out: Dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key in sorted(value):
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    elif prefix not in NOT_DEFINING:
        out[prefix] = value


def run_fingerprint(cfg: DictConfig | Mapping[str, Any]) -> Dict[str, Any]:
    """The defining values of ``cfg`` (a composed config or a checkpoint's saved config) as
    ``{"sparsity.sparsity": 0.85, ...}``."""
    out: Dict[str, Any] = {}
    for key in DEFINING:
        if isinstance(cfg, DictConfig):  # resolve only these parts (paths need Hydra's runtime)
            node = OmegaConf.select(cfg, key, default=_ABSENT)
            node = OmegaConf.to_container(node, resolve=True) if isinstance(node, Container) else node
        else:
            node = cfg
            for part in key.split("."):
                node = node.get(part, _ABSENT) if isinstance(node, Mapping) else _ABSENT
        _flatten(node, key, out)
    return out


def first_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> Optional[str]:
    """``key is saved there, current here`` for the first key (in sorted order) whose value
    differs, or None. Keys only one side has are skipped: a schema key added or removed since
    the checkpoint was written says nothing about the run (a changed variant, e.g. another
    sparsity method, differs in the keys both have: its name)."""
    for key in sorted(set(saved) & set(current)):
        a, b = saved[key], current[key]
        if a != b:
            return f"{key} is {a!r} there, {b!r} here"
    return None


def saved_fingerprint(state: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """A checkpoint's fingerprint; for checkpoints written before fingerprints, the one of the
    config they saved; None when they hold neither."""
    if "fingerprint" in state:
        return dict(state["fingerprint"])
    if isinstance(state.get("config"), Mapping):
        return run_fingerprint(state["config"])
    return None


def run_difference(state: Mapping[str, Any], cfg: DictConfig) -> Optional[str]:
    """How a checkpoint's run differs from ``cfg``'s (first differing key), or None: the same run."""
    saved = saved_fingerprint(state)
    return "it records no config" if saved is None else first_difference(saved, run_fingerprint(cfg))


def check_same_run(state: Mapping[str, Any], cfg: DictConfig, source: str, *, force: bool) -> Optional[str]:
    """Refuse (CheckpointError, one line) to resume from ``source`` when its fingerprint differs
    from ``cfg``'s; with ``force`` return the difference as a note for the log instead."""
    diff = run_difference(state, cfg)
    if diff is None:
        return None
    if force:
        return f"[resume] trainer.resume_force=true: resuming {source} although {diff}"
    raise CheckpointError(
        f"trainer.resume: {source} belongs to another run ({diff}); start a new run dir, "
        "trainer.resume=never, or trainer.resume_force=true to continue it anyway"
    )
