"""The training loop. It knows nothing about AC/DC: each step it asks the plan what to do and
runs ``training/step.py::train_step``, which calls the sparsifier's and quantizer's hooks in
their fixed order. The trainer is that step's ``StepParts``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from omegaconf import OmegaConf
from torch import nn
from tqdm import tqdm

from acdc_exp import run_layout as layout
from acdc_exp.loggers.metric_keys import eval_row, step_row
from acdc_exp.models.sync_bn import has_sync_batchnorm
from acdc_exp.plan import StepPlan
from acdc_exp.training import checkpoint as ckpt
from acdc_exp.training.bn_recalibration import RecentBatches, recalibrate_batchnorm
from acdc_exp.training.distributed import any_rank, barrier
from acdc_exp.training.fingerprint import run_fingerprint
from acdc_exp.training.metrics import evaluate, topk_hits
from acdc_exp.training.parts import RunParts
from acdc_exp.training.precision import channels_last_on, full_precision, load_scaler_state, resolve_precision
from acdc_exp.training.results import Results
from acdc_exp.training.setup import load_optimizer_state
from acdc_exp.training.step import train_step


class TrainingInterrupted(Exception):
    """The loop stopped early on request (max_steps, preemption) after writing last.pt."""

    def __init__(self, step: int) -> None:
        super().__init__(f"training stopped at step {step}; last.pt holds the state to resume from")
        self.step = step


class Trainer:
    def __init__(self, parts: RunParts) -> None:
        self.parts = parts
        cfg, model = parts.cfg, parts.model
        self.cfg = cfg
        self.model = model  # the bare module: hooks and checkpoints use it
        self.data = parts.data
        self.optimizer = parts.optimizer
        self.plan = parts.plan
        self.sparsifier = parts.sparsifier
        self.quantizer = parts.quantizer
        self.logger = parts.logger
        self.run_dir = Path(parts.run_dir)
        self.ckpt_dir = layout.checkpoints_dir(self.run_dir)
        self.device = parts.device
        self.dist = parts.dist
        tcfg = cfg.trainer
        # the float phases' numerics; QAT switches self.precision to fp32 (enter_qat)
        self.float_precision = resolve_precision(tcfg.amp, self.device)
        self.precision = self.float_precision
        self.scaler = self.precision.grad_scaler()
        self.channels_last = channels_last_on(tcfg.channels_last, self.device)
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.sync_batchnorm = has_sync_batchnorm(model)  # runs/train.py decides
        self.criterion = nn.CrossEntropyLoss(label_smoothing=float(tcfg.label_smoothing))
        self.step = 0
        self.results = Results()
        self.recent = RecentBatches(int(tcfg.bn_recalibration_batches))
        self.stop_requested = False
        self._phase: Optional[str] = None  # the phase of the last step trained (its change is logged)
        self.forward = self._wrap(model)
        self.sparsifier.attach_optimizer(self.optimizer)

    def _wrap(self, model: nn.Module) -> nn.Module:
        """What the step calls: ``model``, in DDP under torch.distributed, compiled when asked.
        Called again after QAT swaps modules, which gives a fresh DDP and a fresh compile.
        Masks need no recompile: they change weights in place between steps, outside it."""
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.cfg.trainer.compile:
            model = torch.compile(model, mode=self.cfg.trainer.compile_mode)
        return model

    def enter_qat(self) -> None:
        """Swap in the QAT modules (synced BatchNorm stays synced), rebind masks, rewrap; fp32 from here on whatever
        ``trainer.amp`` says: fake-quantized activations in fp16/bf16 leave the int8 grid and the
        int8 model would disagree with the QAT model (SparseML turns AMP off for QAT too)."""
        self.quantizer.prepare(self.model)
        self.sparsifier.rebind(self.model)
        self.forward = self._wrap(self.model)
        if self.precision.dtype is not None:
            self.logger.message(
                f"[qat] fp32 from here on: trainer.amp={self.float_precision.name} applies to the float phases only"
            )
            self.precision = full_precision(self.device)
            self.scaler = self.precision.grad_scaler()

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        return self.data.prepare(images).contiguous(memory_format=self.memory_format)

    def start_qat(self, p: StepPlan) -> None:
        """The step's QAT switch (StepParts): the swap, said once in the log."""
        self.enter_qat()
        self.logger.message(f"[qat] quantization-aware training starts at epoch {p.epoch:.2f}")

    # --- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.plan.epoch_of(self.step),
            "step": self.step,
            "rng": ckpt.rng_state(),
            "sparsifier": self.sparsifier.state_dict(),
            "quantizer": self.quantizer.state_dict(),
            "logger_run_id": self.logger.run_id,
            "results": self.results.__dict__,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "fingerprint": run_fingerprint(self.cfg),
            "precision": self.precision.name,
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        qstate = state.get("quantizer", {})
        if qstate.get("prepared"):  # QAT swapped modules before this checkpoint: swap them again, then load
            self.enter_qat()
        self.quantizer.load_state_dict(qstate)
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        note = load_scaler_state(self.scaler, state.get("scaler"))
        if note:
            self.logger.message(note)
        self.sparsifier.load_state_dict(state["sparsifier"])
        self.results = Results(**state.get("results", {}))
        self.step = int(state["step"])
        self.results.resumed_at_steps.append(self.step)
        ckpt.set_rng_state(state["rng"])

    def save_checkpoint(self) -> Optional[Path]:
        """last.pt at the current step; mid-epoch is fine (resume replays the epoch's batches)."""
        if not self.dist.is_main:
            return None
        return ckpt.save_atomic(self.state_dict(), layout.member_file(self.run_dir, "last"))

    def should_stop(self) -> bool:
        """A stop request on any rank stops all ranks at the same step (else DDP deadlocks)."""
        return any_rank(self.stop_requested, self.dist, self.device)

    def request_stop(self) -> None:
        """Ask the loop to checkpoint and stop after the current step (preemption, SIGTERM)."""
        self.stop_requested = True

    def save_member(self, name: str, metrics: Dict[str, float]) -> Path:
        state = self.state_dict()
        payload = {k: state[k] for k in ("model", "quantizer", "sparsifier", "epoch", "step", "config")}
        return ckpt.save_atomic({**payload, "metrics": metrics}, layout.member_file(self.run_dir, name))

    # --- evaluation -----------------------------------------------------------------------

    def evaluate(self) -> Dict[str, float]:
        if len(self.recent) and not self.quantizer.prepared:  # QAT's own schedule freezes BN
            with self.precision.autocast():
                recalibrate_batchnorm(
                    self.model, self.recent.batches, lambda x: self._prepare(x.to(self.device)), distributed=self.dist.enabled
                )
        kw = dict(precision=self.precision, limit=self.cfg.data.limit_val_batches, distributed=self.dist.enabled)
        return evaluate(self.model, self.data.val_batches(), self._prepare, self.device, **kw)

    def record_eval(self, metrics: Dict[str, float], phase_name: str, epoch: float) -> None:
        self.logger.log_eval(eval_row(metrics, phase_name, epoch), self.step, epoch)
        self.results.record(metrics, phase_name, epoch)

    def _dense_member(self, epoch: float) -> None:
        metrics = self.evaluate()
        self.record_eval(metrics, "dense", epoch)
        self.results.dense, self.results.dense_epoch = metrics, epoch
        if self.dist.is_main:
            path = self.save_member("dense", metrics)
            self.logger.message(f"[pair] dense member saved at epoch {epoch:.2f}: top1 {metrics['top1']:.2f} -> {path}")

    # --- the loop -------------------------------------------------------------------------

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor, p: StepPlan) -> Dict[str, float]:
        images = self._prepare(images.to(self.device, non_blocking=True))
        labels = labels.to(self.device, non_blocking=True)
        loss, logits = train_step(self, images, labels, p, on_mask_update=lambda u: self.logger.log_mask_update(u, self.step))
        # tensors, not numbers: reading them waits for the device, so only logging does
        top1 = topk_hits(logits, labels, ks=(1,))[0] * (100.0 / labels.numel())
        return {"loss": loss, "top1": top1}

    def fit(self) -> float:
        """Train to the plan's last step; returns the wall time. Raises TrainingInterrupted on a stop."""
        started = time.time()
        self._phase = self.plan.phase_name_at(self.step - 1) if self.step else None
        self.model.train()
        first_epoch, skip = divmod(self.step, self.plan.steps_per_epoch)
        for epoch in range(first_epoch, self.plan.epochs):
            stop, evaluated = self._train_epoch(epoch, skip if epoch == first_epoch else 0)
            self._end_epoch(epoch, stop, evaluated)
        return time.time() - started

    def _train_epoch(self, epoch: int, skip: int) -> Tuple[bool, bool]:
        """The steps of ``epoch`` from its batch ``skip`` on (a resume mid-epoch); returns (a stop
        was asked, the dense member's evaluation fell on the epoch's last step)."""
        spe, max_steps = self.plan.steps_per_epoch, self.cfg.trainer.max_steps
        log_every = max(1, int(self.cfg.logger.log_every_steps))
        shown = self.cfg.trainer.progress and self.dist.is_main
        desc = f"epoch {epoch + 1}/{self.plan.epochs}"
        bar = tqdm(total=spe, initial=skip, desc=desc, leave=False, dynamic_ncols=True, mininterval=1.0, disable=not shown)
        window = [time.time(), 0]  # the logging window's start and its images
        evaluated = stop = False
        self.recent.clear()
        for i, (images, labels) in enumerate(self.data.train_batches(epoch)):
            if i >= spe:
                break
            self.recent.add(images)
            if i < skip:
                continue  # resumed mid-epoch: these batches were trained on before the stop
            p = self.plan.at(self.step)
            if p.phase_name != self._phase:
                self.logger.message(f"[phase] epoch {p.epoch:.2f}: {self._phase or 'start'} -> {p.phase_name}")
                self._phase = p.phase_name
            stats = self._train_step(images, labels, p)
            window[1] += labels.shape[0]
            self.step += 1
            if self.plan.is_dense_member_step(self.step - 1):
                self._dense_member(self.plan.epoch_of(self.step))
                evaluated = i == spe - 1
            # host syncs (the loss, top-1, the ranks' stop vote) only on the logging cadence,
            # which every rank reaches at the same step
            on_cadence = self.step % log_every == 0 or i == spe - 1
            if on_cadence:
                self._log_step(stats, p, window, bar)
            bar.update(1)
            if (on_cadence and self.should_stop()) or (max_steps is not None and self.step >= max_steps):
                stop = True
                break
        bar.close()
        return stop, evaluated

    def _log_step(self, stats: Dict[str, torch.Tensor], p: StepPlan, window: list, bar: tqdm) -> None:
        """The step row of the logging window that ends at this step; starts the next window."""
        loss, top1 = torch.stack([stats["loss"].float(), stats["top1"].float()]).tolist()
        ips = window[1] * self.dist.world_size / max(time.time() - window[0], 1e-9)
        row = step_row(
            loss=loss,
            top1=top1,
            lr=p.lr,
            weight_decay=p.weight_decay,
            img_per_s=ips,
            phase=p.phase_id,
            phase_name=p.phase_name,
            target_sparsity=p.masks.sparsity,
            epoch=self.plan.epoch_of(self.step),
        )
        self.logger.log_step(row, self.step)
        bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{ips:.0f}", phase=p.phase_name)
        window[:] = [time.time(), 0]

    def _end_epoch(self, epoch: int, stop: bool, evaluated: bool) -> None:
        """After an epoch's steps (or a stop): evaluate and checkpoint on their cadences, the
        ranks leave together; a stop mid-epoch saves last.pt and raises TrainingInterrupted."""
        tcfg = self.cfg.trainer
        if stop and self.step % self.plan.steps_per_epoch:
            self.save_checkpoint()
            self.logger.message(f"[stop] checkpoint at step {self.step} (epoch {self.plan.epoch_of(self.step):.2f})")
            raise TrainingInterrupted(self.step)
        last = epoch + 1 == self.plan.epochs
        if not evaluated and (last or stop or (epoch + 1) % tcfg.eval_every_epochs == 0):
            self.record_eval(self.evaluate(), self.plan.phase_name_at(self.step - 1), self.plan.epoch_of(self.step))
        if last or stop or (epoch + 1) % tcfg.checkpoint_every_epochs == 0:
            self.save_checkpoint()
        barrier(self.dist)
        if stop and not last:
            raise TrainingInterrupted(self.step)
