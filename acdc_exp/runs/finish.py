"""The end of a run, after the training loop: the int8 member, the summary, the ONNX export
(``trainer.export_onnx``), the training curve, and summary.json / the logger's summary."""

from __future__ import annotations

import json
from typing import Any, Dict

from omegaconf import OmegaConf

from acdc_exp.loggers.plots import plot_training_curve
from acdc_exp.runs.export import run_export
from acdc_exp.training.distributed import ranks_identical
from acdc_exp.training.int8_member import int8_member
from acdc_exp.training.summary import build_summary, parameter_counts
from acdc_exp.training.trainer import Trainer


def finish_run(trainer: Trainer, wall: float, *, export_onnx: bool) -> Dict[str, Any]:
    """Everything a finished loop leaves to do; every rank calls it (the int8 evaluation and
    the ranks' comparison are collective), the main rank writes."""
    t, cfg, dist = trainer, trainer.cfg, trainer.dist
    paths = t.save_members()
    int8_metrics, int8_path = int8_member(
        t.quantizer,
        t.model,
        t.data.val_batches(),
        t.data.prepare,
        limit=cfg.data.limit_val_batches,
        distributed=dist.enabled,
        reduce_device=t.device,
        save_dir=t.ckpt_dir if dist.is_main else None,
        extra={"config": OmegaConf.to_container(cfg, resolve=True)},
        message=t.logger.message,
    )
    if int8_path is not None:
        paths["int8"] = str(int8_path)
    summary = build_summary(
        cfg,
        t.results,
        steps=t.step,
        epochs=t.plan.epochs,
        int8=int8_metrics,
        run_dir=str(t.run_dir),
        amp_dtype=t.precision.name,
        channels_last=t.channels_last,
        compiled=bool(cfg.trainer.compile),
        int8_exact_on_this_cpu=t.quantizer.int8_exact_on_this_cpu() if int8_metrics else None,
        **parameter_counts(t.model, t.sparsifier.layer_sparsity()),
        checkpoints=paths,
        wall_time_s=wall,
        wandb_run_id=t.logger.run_id,
        **t.data.loading(),
        ranks_identical=ranks_identical(dist, t.model, t.sparsifier.masks or {}, t.device),
    )
    if not dist.is_main:
        return summary
    if export_onnx:
        report = run_export(str(t.run_dir))
        summary["onnx"] = {"dir": report["out_dir"], "all_ok": report["all_ok"], "files": [f["path"] for f in report["files"]]}
        t.logger.message(report["table"])
    title = f"{cfg.experiment_name}: validation top-1 by phase"
    curve = plot_training_curve(t.results.history, t.plan.phase_intervals(), t.run_dir / "training_curve.png", title=title)
    summary["training_curve"] = str(curve)
    t.logger.log_image("plots/training_curve", curve)
    (t.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    t.logger.log_summary(summary)
    return summary
