"""Assemble a run from the composed config: model, data, optimizer, plan, hooks, logger."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from acdc_exp import run_layout as layout
from acdc_exp.data import build_data
from acdc_exp.loggers import build_logger, opens_wandb_run
from acdc_exp.models.factory import model_from_config, random_weights_note
from acdc_exp.models.sync_bn import sync_batchnorm_wanted, to_sync_batchnorm
from acdc_exp.plan import Plan
from acdc_exp.quantization import build_quantizer
from acdc_exp.registries import SPARSITY
from acdc_exp.runs.finish import finish_run
from acdc_exp.training import checkpoint as ckpt
from acdc_exp.training.distributed import DistInfo, barrier, cuda_index, init_distributed, max_over_ranks, shutdown
from acdc_exp.training.fingerprint import check_same_run, run_difference
from acdc_exp.training.parts import RunParts
from acdc_exp.training.precision import channels_last_on, configure_determinism
from acdc_exp.training.preemption import PreemptionGuard, signal_to_forward
from acdc_exp.training.setup import build_optimizer, resolve_device, seed_everything
from acdc_exp.training.trainer import Trainer, TrainingInterrupted


def run_training(cfg: DictConfig, overrides: Optional[List[str]] = None) -> Dict[str, Any]:
    """Train as ``cfg`` says; ``overrides`` (the command line) name the W&B run."""
    tcfg = cfg.trainer
    if tcfg.num_threads:
        torch.set_num_threads(int(tcfg.num_threads))
    device = resolve_device(tcfg.device)
    configure_determinism(bool(tcfg.deterministic), device)
    dist: DistInfo = init_distributed(device.type)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", cuda_index(dist.local_rank, torch.cuda.device_count()))
    run_dir = Path(cfg.paths.run_dir)
    # a re-launched sweep runs only what is missing: the main rank decides for all
    done = finished_run(run_dir, cfg) if dist.is_main and str(tcfg.resume) == "auto" else None
    if max_over_ranks(int(done is not None), dist, device):
        if dist.is_main:
            print(f"[skip] {run_dir} already finished this run (summary.json, matching checkpoint): nothing to do", flush=True)
        shutdown(dist)
        return done or {"skipped": True, "run_dir": str(run_dir)}
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(int(cfg.seed))
    data = build_data(
        cfg.data,
        data_cache=cfg.paths.data_cache,
        device=device,
        seed=int(cfg.seed),
        rank=dist.rank,
        world_size=dist.world_size,
        distributed=dist.enabled,
    )
    model: nn.Module = model_from_config(cfg.model).to(device)
    if channels_last_on(tcfg.channels_last, device):  # NHWC weights; the trainer feeds NHWC batches to match
        model = model.to(memory_format=torch.channels_last)
    if sync_batchnorm_wanted(tcfg.sync_batchnorm, data.loading()["batch_size_per_process"], dist.world_size):
        model = to_sync_batchnorm(model)  # before DDP wraps it; the same parameters
    optimizer = build_optimizer(cfg.optimizer, model)
    method = SPARSITY.build(cfg.sparsity)  # once: the plan's schedule, the sparsifier, the summary
    plan = Plan.from_config(cfg, data.steps_per_epoch(), method)
    sparsifier = method.sparsifier(model)
    quantizer = build_quantizer(cfg.quantization, model)

    resume_path = ckpt.resolve_resume(str(tcfg.resume), run_dir)
    state = ckpt.load(resume_path) if resume_path else None
    # before the logger starts: a refused resume opens no W&B run
    resume_note = check_same_run(state, cfg, str(resume_path), force=bool(tcfg.resume_force)) if state else None
    if dist.is_main:  # this run trains here now: a summary of an earlier training of the dir is stale
        (run_dir / layout.SUMMARY).unlink(missing_ok=True)
    logger = build_logger(
        cfg.logger,
        run_dir=run_dir,
        config={**OmegaConf.to_container(cfg, resolve=True), "loading": data.loading()},
        resume_id=state.get("logger_run_id") if state else None,
        is_main=dist.is_main,
        overrides=list(overrides or []),
    )
    if state is None and (note := random_weights_note(cfg.model)):
        logger.message(note)  # rank 0 only (the others' loggers are silent); a resume has trained weights
    export_onnx = bool(tcfg.export_onnx) and dist.is_main
    if export_onnx:
        # here, not at module level: onnx and onnxscript take seconds to import, and most runs do not export
        from acdc_exp.deploy.export import warm_dynamo_exporter

        warm_dynamo_exporter()  # before the data loaders start (a CPython 3.11.7 AST bug workaround)
    parts = RunParts(cfg, model, data, optimizer, plan, method, sparsifier, quantizer, logger, run_dir, device, dist)
    trainer = Trainer(parts)
    if resume_note:
        logger.message(resume_note)
    if state is not None:
        trainer.load_state_dict(state)
        logger.message(f"[resume] from {resume_path} at epoch {plan.epoch_of(trainer.step):.2f} (step {trainer.step})")
    guard = PreemptionGuard(trainer.request_stop)
    stopped = False
    try:
        with guard:
            summary = finish_run(trainer, trainer.fit(), export_onnx=export_onnx)
        barrier(dist)  # the ranks leave together: none exits while another still writes
    except TrainingInterrupted as stop:
        stopped = True  # every rank stops at the same step (the trainer's vote)
        summary = {
            "interrupted": True,
            "step": stop.step,
            "run_dir": str(run_dir),
            "checkpoint": str(layout.member_file(run_dir, "last")),
        }
    finally:
        logger.finish()
        data.close()
        # DDP's reducer holds the process group: free it before the group goes, while the
        # interpreter is whole, so gloo's threads are joined here and not at exit
        del trainer, parts, model, optimizer, sparsifier, quantizer
        gc.collect()
        if not stopped:
            shutdown(dist)
    if stopped:
        _leave_after_stop(guard, dist, device, summary)
    # a signal that came after the run's last stage began: the run is complete, nothing to requeue
    return summary


def finished_run(run_dir: Path, cfg: DictConfig) -> Optional[Dict[str, Any]]:
    """The summary of ``run_dir`` when it holds this very run finished: summary.json written
    at the step of last.pt, whose run fingerprint matches ``cfg``, with the ONNX export and the
    W&B run ``cfg`` asks for; else None (the run resumes, or trains, as usual)."""
    summary_path, last = run_dir / layout.SUMMARY, layout.member_file(run_dir, "last")
    if not (summary_path.is_file() and last.is_file()):
        return None
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError):  # unreadable or not JSON: not a finished run's summary
        return None
    if bool(cfg.trainer.export_onnx) and "onnx" not in summary:
        return None  # asked for now: resuming at the last step exports
    if summary.get("wandb_run_id") is None and opens_wandb_run(cfg.logger):
        return None  # W&B asked for now: resuming at the last step logs the run's end
    state = ckpt.load(last)
    if summary.get("interrupted") or summary.get("steps") != state.get("step") or run_difference(state, cfg) is not None:
        return None
    return summary


def _leave_after_stop(guard: PreemptionGuard, dist: DistInfo, device: torch.device, summary: Dict[str, Any]) -> None:
    """After a stop (last.pt written by the main rank): the main rank asks for the requeue
    (submitit's handler, for the signal any rank received), then all ranks leave together, so
    SLURM, which ends a step when one task exits non-zero, never cuts the write or the request
    short. The main rank exits as the signal asks; the other ranks exit 0."""
    signum = signal_to_forward(max_over_ranks(guard.received_flags(), dist, device))
    outcome = guard.forward(signum) if signum and dist.is_main else None
    barrier(dist)
    shutdown(dist)
    if not signum:
        return  # trainer.max_steps: a plain stop
    print(f"[preempted] signal {signum}: state saved at step {summary.get('step')}", flush=True)
    if dist.is_main:
        outcome.exit()
