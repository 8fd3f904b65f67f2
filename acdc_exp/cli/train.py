"""``acdc-train``: Hydra main for training. With no arguments it runs the embedded demo
(AC/DC on scikit-learn's digits through FFCV)."""

from __future__ import annotations

import sys
from typing import Any, Dict, List

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from acdc_exp.cli.common import guarded, hydra_command
from acdc_exp.config.precheck import prepare_train_job
from acdc_exp.config.schema import torchrun_run_id

PROG = "acdc-train"


def format_summary(summary: Dict[str, Any]) -> str:
    if summary.get("interrupted"):
        return (
            f"== stopped at step {summary['step']}; state saved in {summary['checkpoint']}\n"
            f"   continue with: acdc-train <same overrides> hydra.run.dir={summary['run_dir']}"
        )

    def pct(v):
        return "-" if v is None else f"{v:.2f}%"

    lines = [
        f"== {summary['experiment']}: {summary['epochs']} epochs, {summary['steps']} steps, {summary['wall_time_s']:.1f}s",
        f"   final ({summary['final_phase']}): top1 {pct(summary['final_top1'])}  top5 {pct(summary['final_top5'])}",
        f"   dense member: top1 {pct(summary['dense_top1'])}   sparse: top1 {pct(summary['sparse_top1'])}"
        + (f"   gap {summary['dense_sparse_gap']:.2f} pts" if summary.get("dense_sparse_gap") is not None else ""),
    ]
    if summary.get("qat_top1") is not None:
        lines.append(f"   QAT (fake-quant): top1 {pct(summary['qat_top1'])}   int8: top1 {pct(summary['sparse_int8_top1'])}")
    lines.append(
        f"   sparsity of pruned layers {100 * summary['sparsity_pruned_layers']:.2f}%  "
        f"nonzero params {summary['params_nonzero']:,}/{summary['params_total']:,}"
    )
    lines.append(f"   summary: {summary['run_dir']}/summary.json")
    return "\n".join(lines)


def _task(cfg: DictConfig, overrides: List[str]) -> Dict[str, Any]:
    """``cfg``: prepared (prepare_train_job) by hydra_command."""
    from acdc_exp.runs.train import run_training  # lazy: --help and bad overrides answer before torch loads

    def go():
        with open_dict(cfg):
            cfg.paths.run_dir = HydraConfig.get().runtime.output_dir
        return run_training(cfg, overrides)

    summary = guarded(PROG, go)
    print(format_summary(summary))
    return summary


def main() -> None:
    if not any(a.lstrip("+").startswith("hydra.run.dir=") for a in sys.argv[1:]):
        guarded(PROG, torchrun_run_id)  # the run dir's name comes from it: refuse torchrun's shared default
    hydra_command(PROG, "train", _task, prepare=prepare_train_job)


if __name__ == "__main__":
    main()
