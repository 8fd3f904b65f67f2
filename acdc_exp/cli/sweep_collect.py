"""``acdc-sweep-collect SWEEP_DIR [--out DIR]``: one table (sparsity -> dense top-1, sparse
top-1) and one plot from the summaries of a finished multirun."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from acdc_exp.cli.common import guarded
from acdc_exp.runs.collect import collect

PROG = "acdc-sweep-collect"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("sweep_dir", type=Path, help="the multirun dir Hydra printed (runs/multirun/<experiment>/<time>)")
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write sweep_summary.{md,csv,png} (default: the sweep dir)"
    )
    args = parser.parse_args(argv)

    table, csv_path, png = guarded(PROG, lambda: collect(args.sweep_dir, args.out))
    print(table)
    print(f"\nwrote {csv_path} and {png}")


if __name__ == "__main__":
    main()
