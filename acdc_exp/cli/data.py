"""``acdc-data``: write .beton files, build the digits dataset, generate synthetic trees."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from acdc_exp.errors import AcdcError


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acdc-data", description="Write .beton files, build the digits dataset, generate synthetic trees."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    w = sub.add_parser("write", help="DIR/train and DIR/val folders -> OUT/train.beton, OUT/val.beton")
    w.add_argument("--src", required=True, type=Path, help="folder holding train/ and val/")
    w.add_argument("--out", required=True, type=Path, help="output folder for the .beton files")
    w.add_argument("--max-resolution", type=_positive, default=256, help="longest stored side in pixels (default 256)")
    w.add_argument("--jpeg-quality", type=int, default=90)
    w.add_argument("--compress-probability", type=float, default=0.5)
    w.add_argument("--write-mode", default="proportion", choices=["raw", "jpg", "smart", "proportion"])
    w.add_argument("--num-workers", type=_positive, default=1)
    w.add_argument("--chunk-size", type=_positive, default=100)
    w.add_argument("--force", action="store_true", help="overwrite existing .beton files")

    d = sub.add_parser("digits", help="build the digits tree and .beton files in OUT")
    d.add_argument("--out", required=True, type=Path)

    s = sub.add_parser("synth", help="generate an ImageNet-layout JPEG tree in OUT")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--classes", type=_positive, default=4)
    s.add_argument("--per-class", type=_positive, default=5)
    s.add_argument("--val-per-class", type=_positive, default=None)
    s.add_argument("--min-side", type=_positive, default=300)
    s.add_argument("--max-side", type=_positive, default=500)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-odd-modes", action="store_true", help="no grayscale/CMYK JPEGs among the train images")
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.command == "write":
        from acdc_exp.data.beton_writer import write_beton  # lazy: --help and bad arguments answer before torch loads

        for split in ("train", "val"):
            out = write_beton(
                args.src / split,
                args.out / f"{split}.beton",
                max_resolution=args.max_resolution,
                jpeg_quality=args.jpeg_quality,
                compress_probability=args.compress_probability,
                write_mode=args.write_mode,
                num_workers=args.num_workers,
                chunk_size=args.chunk_size,
                force=args.force,
            )
            print(f"wrote {out}")
    elif args.command == "digits":
        from acdc_exp.data.beton import check_beton  # lazy: --help and bad arguments answer before torch loads
        from acdc_exp.data.digits import ensure_digits

        files = ensure_digits(args.out)
        for path in (files.train_beton, files.val_beton):
            print(f"{path}: {check_beton(path).num_samples} images")
    else:
        from acdc_exp.data.synthetic import make_image_tree  # lazy: --help and bad arguments answer before torch loads

        out = make_image_tree(
            args.out,
            classes=args.classes,
            per_class=args.per_class,
            val_per_class=args.val_per_class,
            min_side=args.min_side,
            max_side=args.max_side,
            seed=args.seed,
            odd_modes=not args.no_odd_modes,
        )
        print(f"wrote {out}/train and {out}/val")


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _run(args)
    except AcdcError as exc:
        print(f"acdc-data: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
