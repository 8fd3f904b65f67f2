"""``acdc-eval``: top-1/top-5 of a saved member on the validation set, and its size on disk.

    acdc-eval checkpoint=runs/digits_acdc/2024-..                 # the final member
    acdc-eval checkpoint=RUN member=dense
    acdc-eval checkpoint=RUN member=int8                          # final_int8.pt, on CPU
    acdc-eval checkpoint=RUN/checkpoints/final.pt data.limit_val_batches=2

The architecture comes from the config saved in the checkpoint; the data is the run's own
data config unless ``data=...``/``data.*=...`` overrides are given (any other Hydra override
of the train config, e.g. ``trainer.device=cpu`` or ``paths.data_cache=...``, also applies).
Size on disk is the member's state dict as torch.save writes it, raw and gzip'ed: pruned
weights are exact zeros, which compress.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from acdc_exp.cli.common import guarded
from acdc_exp.cli.kvargs import split_args
from acdc_exp.errors import ConfigError

PROG = "acdc-eval"
KEYS = ("checkpoint", "member")


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


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "args", nargs="*", help="checkpoint=PATH member=final|dense|int8|last, then Hydra overrides (data=..., data.*=...)"
    )
    ns = parser.parse_args(argv)

    def go() -> Dict[str, Any]:
        from acdc_exp.runs.evaluate import evaluate_checkpoint

        opts, rest = split_args(ns.args, KEYS)
        if "checkpoint" not in opts:
            raise ConfigError("checkpoint= is required (a run dir or a .pt file)")
        return evaluate_checkpoint(opts["checkpoint"], opts.get("member", "final"), rest)

    print(format_result(guarded(PROG, go)))


if __name__ == "__main__":
    main()
