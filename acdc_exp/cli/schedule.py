"""``acdc-schedule``: print, dump or plot the plan of any experiment without training. A Hydra
app on configs/schedule.yaml (the training config plus ``schedule.*``):

    acdc-schedule experiment=resnet50_imagenet_acdc85_quant
    acdc-schedule experiment=... schedule.format=json > trace.json
    acdc-schedule recipe=recipes/x.yaml schedule.plot=schedule.png

Steps per epoch are the run's own where they are known without reading the data
(data/epoch_size.py); a note on stderr says what was assumed otherwise.
"""

from __future__ import annotations

import json
import sys
from typing import List, Tuple

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from acdc_exp.cli.common import guarded, hydra_command
from acdc_exp.config.compose import finalize
from acdc_exp.config.precheck import Launch
from acdc_exp.data.epoch_size import EpochSize, planned_epoch_size
from acdc_exp.errors import ConfigError, check_choice
from acdc_exp.plan import Plan

PROG = "acdc-schedule"
FORMATS = ("table", "json")
# the flags of the argparse version, and the overrides that replaced them
RENAMED_FLAGS = {
    "--json": "schedule.format=json",
    "--steps-per-epoch": "schedule.steps_per_epoch=N",
    "--plot": "schedule.plot=PNG",
}


def _masks_cell(row: dict) -> str:
    """``update`` for a recompute; for RigL/SET the epoch's update count and first drop fraction."""
    if row["drop_fraction"]:
        return f"{row['mask_updates']}x f={row['drop_fraction']:.3f}"
    return "update" if row["mask_update"] else ""


def format_table(plan: Plan) -> str:
    rows = plan.epoch_table()
    width = max([6] + [len(_masks_cell(r)) for r in rows])
    out = [
        (
            f"{'epoch':>5}  {'phase':<10}  {'sparsity':>8}  {'lr':>10}  {'wd':>8}  "
            f"{'masks':<{width}} {'qat':<4} {'obs.frozen':<10} {'bn.frozen':<9}"
        )
    ]
    for r in rows:
        out.append(
            f"{r['epoch']:>5}  {r['phase']:<10}  {r['sparsity']:>8.3f}  {r['lr']:>10.6f}  {r['weight_decay']:>8.1e}  "
            f"{_masks_cell(r):<{width}} {'on' if r['qat'] else '':<4} "
            f"{'yes' if r['observers_frozen'] else '':<10} {'yes' if r['bn_frozen'] else '':<9}"
        )
    return "\n".join(out)


def _task(cfg: DictConfig, overrides: List[str]) -> None:
    world_size = Launch.of(HydraConfig.get()).ranks  # a SLURM preset's DDP ranks; the local launcher: 1
    plan, size, out = guarded(PROG, lambda: _plan(cfg, overrides, world_size))
    if size.note:
        print(f"{PROG}: note: {size.note}", file=sys.stderr)
    if out.plot:
        from acdc_exp.loggers.plots import plot_schedule  # matplotlib only when a plot is asked for

        plot_schedule(plan, out.plot)
        print(f"wrote {out.plot}", file=sys.stderr)
    if out.format == "json":
        trace = {"steps_per_epoch": plan.steps_per_epoch, "steps_per_epoch_source": size.source, "epochs": plan.epochs}
        json.dump({**trace, "steps": plan.trace()}, sys.stdout)
        sys.stdout.write("\n")
    elif not out.plot:
        print(f"# {size.source}; lr at each epoch's first step")
        print(format_table(plan))


def _plan(cfg: DictConfig, overrides: List[str], world_size: int) -> Tuple[Plan, EpochSize, DictConfig]:
    out = cfg.schedule
    check_choice("schedule.format", out.format, FORMATS)
    if out.steps_per_epoch is not None and out.steps_per_epoch <= 0:
        raise ConfigError(f"schedule.steps_per_epoch={out.steps_per_epoch} must be > 0")
    cfg = finalize(cfg, overrides)
    if out.steps_per_epoch is not None:
        size = EpochSize(int(out.steps_per_epoch), f"{out.steps_per_epoch} steps per epoch: schedule.steps_per_epoch")
    else:
        size = planned_epoch_size(cfg.data, world_size)
    return Plan.from_config(cfg, size.steps), size, out


def main() -> None:
    hydra_command(PROG, "schedule", _task, RENAMED_FLAGS)


if __name__ == "__main__":
    main()
