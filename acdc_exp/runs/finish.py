"""The end of a run, after the training loop: the int8 member, the summary, the ONNX export
(``trainer.export_onnx``), the training curve, and summary.json / the logger's summary."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from omegaconf import OmegaConf

from acdc_exp import run_layout as layout
from acdc_exp.loggers.plots import plot_training_curve
from acdc_exp.runs.export import run_export
from acdc_exp.training import checkpoint as ckpt
from acdc_exp.training.compute import run_compute
from acdc_exp.training.distributed import max_over_ranks, ranks_identical
from acdc_exp.training.fingerprint import run_difference
from acdc_exp.training.int8_member import int8_member
from acdc_exp.training.metrics import EvaluationStopped
from acdc_exp.training.summary import build_summary, parameter_counts
from acdc_exp.training.trainer import Trainer, TrainingInterrupted


def finish_run(trainer: Trainer, wall: float, *, export_onnx: bool) -> Dict[str, Any]:
    """Everything a finished loop leaves to do; every rank calls it (the int8 evaluation and
    the ranks' comparison are collective), the main rank writes."""
    t, cfg, dist = trainer, trainer.cfg, trainer.dist
    paths = _save_members(t)
    # a preemption signal here stops between stages (last.pt holds the finished training), so
    # the requeue still comes before the time limit; the rerun skips what is on disk
    _stop_if_asked(t)
    int8_metrics, int8_path = _int8_done(t)
    if int8_metrics is None and t.quantizer.prepared:
        # one engine for every rank's shard: the backend only where it is exact on all of them
        exact = not max_over_ranks(int(not t.quantizer.backend_exact_on_this_cpu()), dist, t.device)
        try:
            int8_metrics, int8_path = int8_member(
                t.quantizer,
                t.model,
                t.data.val_batches(),
                t.data.prepare,
                limit=cfg.data.limit_val_batches,
                distributed=dist.enabled,
                reduce_device=t.device,
                save_dir=t.ckpt_dir if dist.is_main else None,
                extra={"config": OmegaConf.to_container(cfg, resolve=True), "step": t.step},
                message=t.logger.message,
                backend_exact=exact,
                stop=lambda: t.stop_requested,  # the local flag: the evaluation's own all-reduce carries it
            )
        except EvaluationStopped:  # every rank raises it (the evaluation's all-reduce carries the stop)
            t.logger.message(f"[stop] during the int8 evaluation; last.pt (step {t.step}) finishes the run on resume")
            raise TrainingInterrupted(t.step) from None
    if int8_path is not None:
        paths["int8"] = str(int8_path)
    _stop_if_asked(t)
    layer_sparsity = t.sparsifier.layer_sparsity()
    compute = run_compute(
        t.model,
        t.plan,
        lambda epoch: t.data.resolution(int(epoch)),  # the loader's resolution holds for a whole epoch
        int(cfg.data.val_res),
        layer_sparsity,
        t.parts.method.target_sparsity,
        t.data.loading()["global_batch_size"],
        t.step,
    )
    summary = build_summary(
        cfg,
        t.parts.method,
        t.results,
        steps=t.step,
        epochs=t.plan.epochs,
        int8=int8_metrics,
        run_dir=str(t.run_dir),
        amp_dtype=t.float_precision.name,
        qat_amp_dtype=t.precision.name if t.quantizer.prepared else None,
        channels_last=t.channels_last,
        sync_batchnorm=t.sync_batchnorm,
        compiled=bool(cfg.trainer.compile),
        int8_exact_on_this_cpu=t.quantizer.int8_exact_on_this_cpu() if int8_metrics else None,
        int8_engine=int8_metrics.get("int8_engine") if int8_metrics else None,
        **parameter_counts(t.model, layer_sparsity),
        **compute,
        pair_dense_top1=t.results.dense["top1"] if t.results.dense and t.plan.dense_member_is_pair() else None,
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
    curve = plot_training_curve(t.results.history, t.plan.phase_intervals(), t.run_dir / layout.TRAINING_CURVE, title=title)
    summary["training_curve"] = str(curve)
    t.logger.log_image("plots/training_curve", curve)
    # atomically: a re-launched sweep skips a run whose summary.json exists (runs/train.py)
    tmp = t.run_dir / f".{layout.SUMMARY}.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, t.run_dir / layout.SUMMARY)
    t.logger.log_summary(summary)
    return summary


def _stop_if_asked(t: Trainer) -> None:
    """TrainingInterrupted when a stop was asked on any rank (collective: every rank calls it)."""
    if t.should_stop():
        t.logger.message(f"[stop] during the run's end stage; last.pt (step {t.step}) finishes it on resume")
        raise TrainingInterrupted(t.step)


def _int8_done(t: Trainer) -> Tuple[Optional[Dict[str, Any]], Optional[Path]]:
    """The int8 member already scored for this very step and run (an end stage that stopped
    after it, or a finished run resumed again), else (None, None). The main rank decides for
    all (the int8 evaluation that follows otherwise is collective)."""
    path = layout.member_file(t.run_dir, "int8")
    saved = ckpt.load(path) if t.quantizer.prepared and path.exists() and t.dist.is_main else None
    usable = saved is not None and saved.get("step") == t.step and saved.get("metrics") is not None
    usable = usable and run_difference(saved, t.cfg) is None
    if not max_over_ranks(int(usable), t.dist, t.device):
        return None, None
    t.logger.message(f"[int8] already scored at step {t.step}: {path}")
    return (saved["metrics"], path) if t.dist.is_main else ({}, None)


def _save_members(t: Trainer) -> Dict[str, str]:
    """After the loop: the final evaluation if a resume lost it, final.pt, and the paths of
    the members on disk (main rank)."""
    r = t.results
    if r.final is None:  # resumed after the last epoch's evaluation was lost
        t.record_eval(t.evaluate(), t.plan.phase_name_at(max(t.step - 1, 0)), t.plan.epoch_of(t.step))
    if r.final_phase == "dense" and r.dense is None:  # a dense baseline: the final model is the dense member
        r.dense, r.dense_epoch = r.final, t.plan.epoch_of(t.step)
    paths: Dict[str, str] = {}
    if t.dist.is_main:
        paths["final"] = str(t.save_member("final", r.final))
        paths["last"] = str(layout.member_file(t.run_dir, "last"))
        dense = layout.member_file(t.run_dir, "dense")
        if dense.exists():
            paths["dense"] = str(dense)
    return paths
