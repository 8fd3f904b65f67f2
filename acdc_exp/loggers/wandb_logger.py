"""Weights & Biases logging laid out to explain an AC/DC run.

Key scheme (see docs/wandb.md for the suggested panels):

* ``trainer/step`` (= W&B's own step) is the optimizer step; ``train/*`` and ``schedule/*``
  are plotted against it. Using the optimizer step as the W&B step keeps steps monotonic
  across a resume, because a resumed run continues from the step saved in its checkpoint.
* ``epoch`` (fractional) is the x axis of ``val/*`` and ``sparsity/*``.
* ``schedule/phase`` (0 dense, 1 compressed, 2 qat) and ``schedule/phase_name``.
* at each mask recomputation: ``sparsity/global``, ``sparsity/target``,
  ``sparsity/mask_changed`` (fraction of the mask that differs from the previous compressed
  phase: the AC/DC paper's mask-stability measure), ``sparsity/layer/<layer>``, a
  ``sparsity/layers`` table and a ``sparsity/layers_chart`` bar chart (also in run_dir/plots).
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import wandb
from omegaconf import MISSING, DictConfig

from acdc_exp import run_layout as layout
from acdc_exp.errors import ConfigError
from acdc_exp.loggers.base import Logger, MultiLogger
from acdc_exp.loggers.console import ConsoleLogger
from acdc_exp.loggers.plots import plot_layer_sparsity
from acdc_exp.loggers.wandb_log_file import wait_until_complete
from acdc_exp.records import MaskUpdate
from acdc_exp.registries import LOGGERS, LoggerConfig

MODES = ("online", "offline", "disabled")
MAX_NAME_LEN = 128
FLUSH_TIMEOUT_S = 60.0
# the folder wandb.init(dir=<run dir>) writes its files in (its name is wandb's choice)
WANDB_DIR = "wandb"

# override keys that say where or how a run executes, not what it trains: left out of names
NOISY_KEYS = (
    "paths",
    "logger",
    "hydra",
    "experiment",
    "experiment_name",
    "trainer.progress",
    "trainer.resume",
    "trainer.num_threads",
    "trainer.device",
    "data.num_workers",
    "data.train_path",
    "data.val_path",
    "data.beton_dir",
    "data.cache_dir",
    "data.os_cache",
    "data.batches_ahead",
)


# --- names ---------------------------------------------------------------------------------


def _sanitize(text: str) -> str:
    text = re.sub(r"[^A-Za-z0-9_.,=+\-]+", "_", text)
    return re.sub(r"_+", "_", text).strip("_")


def run_name(experiment: str, overrides: Sequence[str], max_len: int = MAX_NAME_LEN) -> str:
    """``digits_acdc-sparsity.sparsity=0.95-seed=1``: the experiment plus the overrides that
    change what is trained (like the recipe's ``--model-tag``). Path values keep their file
    stem; too-long names are cut and end in a hash of the full name so they stay distinct."""
    parts = [_sanitize(experiment) or "run"]
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.lstrip("+~")
        if not sep or any(key == k or key.startswith(k + ".") for k in NOISY_KEYS):
            continue
        if "/" in value:  # a path: its stem names the file well enough
            value = Path(value.rstrip("/")).stem
        piece = _sanitize(f"{key}={value}")
        if piece:
            parts.append(piece)
    name = "-".join(parts)
    if len(name) > max_len:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = name[: max_len - 9].rstrip("-_.") + "-" + digest
    return name


def layer_key(param_name: str) -> str:
    """``layer1.0.conv1.weight`` -> ``layer1_0_conv1``: dots in metric names confuse the
    W&B UI (axes and metric globs), so the per-layer scalars use underscores."""
    name = param_name[: -len(".weight")] if param_name.endswith(".weight") else param_name
    return _sanitize(name.replace(".", "_"))


def artifact_name(text: str) -> str:
    """Artifact names allow letters, digits, ``-``, ``_`` and ``.`` only."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", text).strip("-")[:120] or "artifact"


# --- plots ---------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """Summary values: Nones dropped (a run without QAT has no int8 top-1 to show), paths as
    text, and non-finite floats as text since the summary is JSON."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value


class WandbLogger(Logger):
    def __init__(
        self,
        cfg: DictConfig,
        *,
        run_dir: Path,
        config: Dict[str, Any],
        resume_id: Optional[str] = None,
        overrides: Sequence[str] = (),
    ) -> None:
        mode = str(cfg.mode)
        if mode not in MODES:
            raise ConfigError(f"logger.mode={mode!r} is not supported; allowed: {', '.join(MODES)}")
        self.cfg = cfg
        self.mode = mode
        self.run_dir = Path(run_dir)
        self.plots_dir = self.run_dir / layout.PLOTS
        self.log_artifacts = bool(cfg.log_artifacts)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        experiment = str(config.get("experiment_name", "run")) if isinstance(config, Mapping) else "run"
        self.name = str(cfg.name) if cfg.name else run_name(experiment, list(overrides))
        sweep = config.get("sweep_name") if isinstance(config, Mapping) else None
        self._last_step = 0
        self._updates: List[MaskUpdate] = []
        self._summary_logged = False
        self._finished = False
        self.run = wandb.init(
            mode=mode,
            project=str(cfg.project),
            entity=cfg.entity,
            # a sweep's runs share a group, so W&B shows them side by side
            group=cfg.group or (f"{experiment}-sweep-{sweep}" if sweep else None),
            tags=[str(t) for t in cfg.tags],
            job_type=str(cfg.job_type),
            # a resumed run keeps the name it was given first (overrides may differ now)
            name=self.name if (resume_id is None or cfg.name) else None,
            dir=str(self.run_dir),
            config=dict(config, overrides=list(overrides)),
            id=resume_id,
            resume="allow" if resume_id else None,
            # this object owns its run; another run left open in the process must not be reused
            reinit="create_new",
        )
        self.run_id: Optional[str] = self.run.id
        # the transaction log (what `wandb sync` uploads and the tests read back)
        self.sync_file: Optional[Path] = None if mode == "disabled" else Path(self.run.settings.sync_file)
        self._define_metrics()

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled" and not self._finished

    def _define_metrics(self) -> None:
        r = self.run
        r.define_metric("trainer/step")
        r.define_metric("epoch")
        for glob in ("train/*", "schedule/*"):
            r.define_metric(glob, step_metric="trainer/step")
        for glob in ("val/*", "sparsity/*"):
            r.define_metric(glob, step_metric="epoch")

    def _log(self, row: Dict[str, Any], step: int) -> None:
        # rows logged at the same step merge into one W&B history row
        step = int(step)
        self._last_step = max(self._last_step, step)
        row["trainer/step"] = step
        self.run.log(row, step=step)

    # --- Logger interface -----------------------------------------------------------------

    def log_step(self, metrics: Mapping[str, Any], step: int) -> None:
        if not self.enabled:
            return
        self._log(dict(metrics), step)  # the keys are already W&B's (loggers.metric_keys)

    def log_eval(self, metrics: Mapping[str, Any], step: int, epoch: float) -> None:
        if not self.enabled:
            return
        row = dict(metrics)
        row["epoch"] = float(epoch)
        self._log(row, step)

    def log_mask_update(self, update: MaskUpdate, step: int) -> None:
        if not self.enabled:
            return
        self._updates.append(update)
        row: Dict[str, Any] = {
            "epoch": float(update.epoch),
            "sparsity/global": float(update.global_sparsity),
            "sparsity/target": float(update.target_sparsity),
        }
        if update.changed_fraction is not None:
            row["sparsity/mask_changed"] = float(update.changed_fraction)
        if update.drop_fraction is not None:
            row["sparsity/drop_fraction"] = float(update.drop_fraction)
        for name, value in update.layer_sparsity.items():
            row[f"sparsity/layer/{layer_key(name)}"] = float(value)
        for name, value in update.layer_changed.items():
            row[f"sparsity/layer_changed/{layer_key(name)}"] = float(value)
        if update.drop_fraction is None:
            # a table and a chart per recompute; RigL's frequent updates (hundreds on ImageNet) log
            # their scalars only: a chart each would stall rank 0 and fill plots/
            table = wandb.Table(columns=["param", "sparsity", "mask_changed"])
            for name, value in update.layer_sparsity.items():
                table.add_data(name, float(value), update.layer_changed.get(name))
            row["sparsity/layers"] = table
            png = plot_layer_sparsity(update, self.plots_dir / f"layer_sparsity_step{int(step):08d}.png")
            row["sparsity/layers_chart"] = wandb.Image(str(png), caption=f"epoch {update.epoch:.2f}")
        self._log(row, step)

    def log_image(self, key: str, path: Path, step: Optional[int] = None) -> None:
        if not self.enabled:
            return
        if step is None:
            # the latest step, so the row is never behind the run (a resumed run that has
            # nothing left to train logs its curve before any step of this process)
            step = max(self._last_step, int(getattr(self.run, "step", 0) or 0))
        self._log({key: wandb.Image(str(path))}, step)

    def _artifact(self, name: str, kind: str, paths: Iterable[Path], metadata: Optional[Dict[str, Any]] = None) -> None:
        paths = [p for p in paths if p.exists()]
        if not paths:
            return
        art = wandb.Artifact(artifact_name(name), type=kind, metadata=_clean(metadata or {}))
        for p in paths:
            if p.is_dir():
                art.add_dir(str(p), name=p.name)
            else:
                art.add_file(str(p), name=p.name)
        self.run.log_artifact(art)

    def log_summary(self, summary: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._summary_logged = True
        if self._updates:
            # one row per mask update of this process: the mask-stability analysis at a glance
            columns = ["step", "epoch", "target", "global_sparsity", "mask_changed", "drop_fraction", "checksum"]
            table = wandb.Table(columns=columns)
            for u in self._updates:
                row = [u.step, float(u.epoch), float(u.target_sparsity), float(u.global_sparsity)]
                table.add_data(*row, u.changed_fraction, u.drop_fraction, u.checksum)
            self._log({"sparsity/updates": table}, self._last_step)
        self.run.summary.update(_clean(summary))
        if self.log_artifacts:
            self._log_run_artifacts(summary)

    def _log_run_artifacts(self, summary: Mapping[str, Any]) -> None:
        ckpts = summary.get("checkpoints") or {}
        pair = [Path(ckpts[k]) for k in ("dense", "final", "int8") if ckpts.get(k)]
        meta = {
            k: summary.get(k)
            for k in (
                "dense_top1",
                "sparse_top1",
                "dense_sparse_gap",
                "sparse_int8_top1",
                "sparsity_target",
                "params_total",
                "params_nonzero",
            )
        }
        # named by run id alone so a resumed run adds a version instead of a new artifact
        self._artifact(f"acdc-pair-{self.run_id}", "model", pair, meta)
        onnx = summary.get("onnx") or []
        onnx = [onnx] if isinstance(onnx, (str, Path)) else list(onnx.values() if isinstance(onnx, Mapping) else onnx)
        found = {Path(p) for p in onnx}
        found.update(p for p in self.run_dir.rglob("*.onnx") if WANDB_DIR not in p.relative_to(self.run_dir).parts)
        self._artifact(f"onnx-{self.run_id}", "onnx", sorted(found), meta)

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        # called from the trainer's ``finally``: an exception in flight before the summary
        # was written means the run failed, and W&B should show it as such
        failed = sys.exc_info()[0] is not None and not self._summary_logged
        self.run.finish(exit_code=1 if failed else 0)
        if self.sync_file is not None:
            # finish() returns before wandb's service has written the file; wait, so that the
            # run dir is complete when training returns (readers, copies, `wandb sync`)
            wait_until_complete(self.sync_file, timeout=FLUSH_TIMEOUT_S)


__all__ = ["WandbLogger", "run_name", "layer_key", "artifact_name", "plot_layer_sparsity", "MODES"]


@dataclass
class WandbLoggerConfig(LoggerConfig):
    mode: str = MISSING  # online | offline | disabled
    project: str = MISSING
    entity: Optional[str] = MISSING
    # null: <experiment>-sweep-<sweep_name> in a sweep (run_group), else none
    group: Optional[str] = MISSING
    tags: List[str] = MISSING
    job_type: str = MISSING
    name: Optional[str] = MISSING  # null: derived from experiment and overrides
    log_artifacts: bool = MISSING


# the run's summary records the W&B run id: a finished run without one logs its end again
@LOGGERS.register(schema=WandbLoggerConfig, opens_wandb_run=True)
def wandb_and_console(
    cfg: DictConfig, *, run_dir: Path, config: Dict[str, Any], resume_id: Optional[str] = None, overrides: Sequence[str] = ()
) -> MultiLogger:
    """logger=wandb: the console's lines, and a W&B run."""
    return MultiLogger(
        ConsoleLogger(), WandbLogger(cfg, run_dir=run_dir, config=config, resume_id=resume_id, overrides=overrides)
    )
