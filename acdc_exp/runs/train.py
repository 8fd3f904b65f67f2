"""Assemble a run from the composed config: model, data, optimizer, plan, hooks, logger."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from acdc_exp.data import build_data
from acdc_exp.launch.preemption import PreemptionGuard
from acdc_exp.loggers import build_logger
from acdc_exp.plan import Plan
from acdc_exp.quantization import build_quantizer
from acdc_exp.runs.finish import finish_run
from acdc_exp.sparsity.sparsifier import Sparsifier
from acdc_exp.training import checkpoint as ckpt
from acdc_exp.training.distributed import DistInfo, barrier, init_distributed, shutdown
from acdc_exp.training.precision import channels_last_on, configure_determinism
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
        device = torch.device("cuda", dist.local_rank)
    run_dir = Path(cfg.paths.run_dir)
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
    model: nn.Module = instantiate(cfg.model).to(device)
    if channels_last_on(tcfg.channels_last, device):  # NHWC weights; the trainer feeds NHWC batches to match
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg.optimizer, model)
    plan = Plan.from_config(cfg, data.steps_per_epoch())
    sparsifier = Sparsifier.from_config(model, cfg.sparsity)
    quantizer = build_quantizer(cfg.quantization, model)

    resume_path = ckpt.resolve_resume(str(tcfg.resume), run_dir)
    state = ckpt.load(resume_path) if resume_path else None
    logger = build_logger(
        cfg.logger,
        run_dir=run_dir,
        config={**OmegaConf.to_container(cfg, resolve=True), "loading": data.loading()},
        resume_id=state.get("logger_run_id") if state else None,
        is_main=dist.is_main,
        overrides=list(overrides or []),
    )
    export_onnx = bool(tcfg.export_onnx) and dist.is_main
    if export_onnx:
        # here, not at module level: onnx and onnxscript take seconds to import, and most runs do not export
        from acdc_exp.quantization.export import warm_dynamo_exporter

        warm_dynamo_exporter()  # before the data loaders start (a CPython 3.11.7 AST bug workaround)
    trainer = Trainer(
        cfg=cfg,
        model=model,
        data=data,
        optimizer=optimizer,
        plan=plan,
        sparsifier=sparsifier,
        quantizer=quantizer,
        logger=logger,
        run_dir=run_dir,
        device=device,
        dist=dist,
    )
    if state is not None:
        trainer.load_state_dict(state)
        logger.message(f"[resume] from {resume_path} at epoch {plan.epoch_of(trainer.step):.2f} (step {trainer.step})")
    guard = PreemptionGuard(trainer.request_stop)
    try:
        with guard:
            summary = finish_run(trainer, trainer.fit(), export_onnx=export_onnx)
        barrier(dist)  # the ranks leave together: none exits while another still writes
    except TrainingInterrupted as stop:
        summary = {
            "interrupted": True,
            "step": stop.step,
            "run_dir": str(run_dir),
            "checkpoint": str(run_dir / "checkpoints" / ckpt.LAST),
        }
    finally:
        logger.finish()
        data.close()
        # DDP's reducer holds the process group: free it before the group goes, while the
        # interpreter is whole, so gloo's threads are joined here and not at exit
        del trainer, model, optimizer, sparsifier, quantizer
        gc.collect()
        shutdown(dist)
    if guard.received is not None:
        logger.message(f"[preempted] signal {guard.received}: state saved at step {summary.get('step')}")
        guard.chain()  # submitit requeues here; without it the default action ends the process
    return summary
