"""``acdc-schedule``: print, dump or plot the plan of any experiment without training. A Hydra
app on configs/schedule.yaml (the training config plus ``schedule.*``):

    acdc-schedule experiment=resnet50_imagenet_acdc85_quant
    acdc-schedule experiment=... schedule.format=json schedule.steps_per_epoch=5005 > trace.json
    acdc-schedule recipe=recipes/x.yaml schedule.plot=schedule.png
"""

from __future__ import annotations

import json
import sys
from typing import List, Tuple

from omegaconf import DictConfig

from acdc_exp.cli.common import guarded, hydra_command
from acdc_exp.config.compose import finalize
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


def format_table(plan: Plan) -> str:
    rows = plan.epoch_table()
    out = [
        (
            f"{'epoch':>5}  {'phase':<10}  {'sparsity':>8}  {'lr':>10}  {'wd':>8}  "
            f"{'masks':<6} {'qat':<4} {'obs.frozen':<10} {'bn.frozen':<9}"
        )
    ]
    for r in rows:
        out.append(
            f"{r['epoch']:>5}  {r['phase']:<10}  {r['sparsity']:>8.3f}  {r['lr']:>10.6f}  {r['weight_decay']:>8.1e}  "
            f"{'update' if r['mask_update'] else '':<6} {'on' if r['qat'] else '':<4} "
            f"{'yes' if r['observers_frozen'] else '':<10} {'yes' if r['bn_frozen'] else '':<9}"
        )
    return "\n".join(out)


def _task(cfg: DictConfig, overrides: List[str]) -> None:
    plan, out = guarded(PROG, lambda: _plan(cfg, overrides))
    if out.plot:
        from acdc_exp.loggers.plots import plot_schedule  # matplotlib only when a plot is asked for

        plot_schedule(plan, out.plot)
        print(f"wrote {out.plot}", file=sys.stderr)
    if out.format == "json":
        json.dump({"steps_per_epoch": plan.steps_per_epoch, "epochs": plan.epochs, "steps": plan.trace()}, sys.stdout)
        sys.stdout.write("\n")
    elif not out.plot:
        print(format_table(plan))


def _plan(cfg: DictConfig, overrides: List[str]) -> Tuple[Plan, DictConfig]:
    out = cfg.schedule
    check_choice("schedule.format", out.format, FORMATS)
    if out.format == "json" and out.steps_per_epoch is None:
        raise ConfigError("schedule.format=json needs schedule.steps_per_epoch=N (the trace is per optimizer step)")
    if out.steps_per_epoch is not None and out.steps_per_epoch <= 0:
        raise ConfigError(f"schedule.steps_per_epoch={out.steps_per_epoch} must be > 0")
    return Plan.from_config(finalize(cfg, overrides), out.steps_per_epoch or 1), out


def main() -> None:
    hydra_command(PROG, "schedule", _task, RENAMED_FLAGS)


if __name__ == "__main__":
    main()
