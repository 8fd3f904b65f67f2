"""``acdc-schedule``: print, dump or plot the plan of any experiment without training.

acdc-schedule experiment=resnet50_imagenet_acdc85_quant
acdc-schedule experiment=... --json --steps-per-epoch 5005 > trace.json
acdc-schedule recipe=recipes/x.yaml --plot schedule.png
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List

from acdc_exp.cli.common import die, guarded
from acdc_exp.config.compose import compose_config, finalize, hydra_error_line
from acdc_exp.plan import Plan

PROG = "acdc-schedule"


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


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for acdc-train")
    parser.add_argument("--json", action="store_true", help="emit the per-step trace as JSON")
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="optimizer steps per epoch (default: 1 for the table, required for --json)",
    )
    parser.add_argument("--plot", metavar="PNG", help="write a plot of lr, sparsity and phases")
    args = parser.parse_args(argv)
    if args.json and args.steps_per_epoch is None:
        die(PROG, "--json needs --steps-per-epoch N (the trace is per optimizer step)")
    if args.steps_per_epoch is not None and args.steps_per_epoch <= 0:
        die(PROG, f"--steps-per-epoch={args.steps_per_epoch} must be > 0")
    try:
        cfg = compose_config(args.overrides)
    except Exception as exc:
        die(PROG, hydra_error_line(exc))

    def go():
        c = finalize(cfg, args.overrides)
        return Plan.from_config(c, args.steps_per_epoch or 1)

    plan = guarded(PROG, go)
    if args.plot:
        from acdc_exp.loggers.plots import plot_schedule

        plot_schedule(plan, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.json:
        json.dump({"steps_per_epoch": plan.steps_per_epoch, "epochs": plan.epochs, "steps": plan.trace()}, sys.stdout)
        sys.stdout.write("\n")
    elif not args.plot:
        print(format_table(plan))


if __name__ == "__main__":
    main()
