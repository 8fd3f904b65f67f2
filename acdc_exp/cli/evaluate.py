"""``acdc-eval``: top-1/top-5 of a saved member on the validation set, and its size on disk.
A Hydra app on configs/eval.yaml (the training config plus ``checkpoint`` and ``member``):

    acdc-eval checkpoint=runs/digits_acdc/2024-..                 # the final member
    acdc-eval checkpoint=RUN member=dense
    acdc-eval checkpoint=RUN member=int8                          # final_int8.pt, on CPU
    acdc-eval checkpoint=RUN/checkpoints/final.pt data.limit_val_batches=2
"""

from __future__ import annotations

from typing import Any, Dict, List

from omegaconf import DictConfig

from acdc_exp.cli.common import guarded, hydra_command

PROG = "acdc-eval"


def format_result(r: Dict[str, Any]) -> str:
    kb = 1024.0
    size = r["size"]
    return "\n".join(
        [
            f"{r['checkpoint']} ({r['member']} member, {r['kind']}, {r['device']}) on {r['data']} val: {r['samples']} images",
            f"  top-1 {r['top1']:.2f}%   top-5 {r['top5']:.2f}%   loss {r['loss']:.4f}",
            f"  model state on disk: {size['raw_bytes'] / kb:,.1f} KiB raw, {size['gzip_bytes'] / kb:,.1f} KiB gzip "
            f"({size['raw_bytes'] / max(size['gzip_bytes'], 1):.2f}x); checkpoint file {r['file_bytes'] / kb:,.1f} KiB",
        ]
    )


def _task(cfg: DictConfig, overrides: List[str]) -> None:
    from acdc_exp.runs.evaluate import evaluate_member  # lazy: --help and bad overrides answer before torch loads

    print(format_result(guarded(PROG, lambda: evaluate_member(cfg, overrides))))


def main() -> None:
    hydra_command(PROG, "eval", _task)


if __name__ == "__main__":
    main()
