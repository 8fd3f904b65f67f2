"""``acdc-data``: write .beton files, build the digits dataset, generate synthetic trees."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from acdc_exp.data.beton_names import REFERENCE_SETTINGS, beton_file_name, config_overrides, jpeg_share
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

    ref = REFERENCE_SETTINGS
    w = sub.add_parser(
        "write",
        help=f"DIR/train and DIR/val folders -> OUT/{beton_file_name('train', **ref)}, OUT/{beton_file_name('val', **ref)}",
        description="Write DIR/train and DIR/val to OUT/<split>_<max side>_<JPEG share>_<JPEG quality>.beton, the "
        "names configs/data/imagenet_ffcv.yaml looks for. The defaults are FFCV's ResNet-50 betons (the reference job's).",
    )
    w.add_argument("--src", required=True, type=Path, help="folder holding train/ and val/")
    w.add_argument("--out", required=True, type=Path, help="output folder for the .beton files")
    w.add_argument(
        "--max-resolution",
        type=_positive,
        default=ref["max_resolution"],
        help="longest stored side in pixels (default %(default)s)",
    )
    w.add_argument("--jpeg-quality", type=int, default=ref["jpeg_quality"], help="default %(default)s")
    w.add_argument(
        "--compress-probability",
        type=float,
        default=ref["compress_probability"],
        help="share stored as JPEG (default %(default)s)",
    )
    # no "smart": its JPEG share depends on the images, so no file name can state it
    w.add_argument("--write-mode", default="proportion", choices=["raw", "jpg", "proportion"], help="raw: no JPEG, jpg: all")
    w.add_argument("--num-workers", type=_positive, default=1)
    w.add_argument("--chunk-size", type=_positive, default=100)
    w.add_argument("--force", action="store_true", help="overwrite existing .beton files")
    w.set_defaults(run=_write)

    d = sub.add_parser("digits", help="build the digits tree and .beton files in OUT")
    d.add_argument("--out", required=True, type=Path)
    d.set_defaults(run=_digits)

    s = sub.add_parser("synth", help="generate an ImageNet-layout JPEG tree in OUT")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--classes", type=_positive, default=4)
    s.add_argument("--per-class", type=_positive, default=5)
    s.add_argument("--val-per-class", type=_positive, default=None)
    s.add_argument("--min-side", type=_positive, default=300)
    s.add_argument("--max-side", type=_positive, default=500)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-odd-modes", action="store_true", help="no grayscale/CMYK JPEGs among the train images")
    s.set_defaults(run=_synth)
    return parser


def _write(args: argparse.Namespace) -> None:
    from acdc_exp.data.beton_writer import write_beton  # lazy: --help and bad arguments answer before torch loads

    settings = {
        "max_resolution": args.max_resolution,
        "compress_probability": jpeg_share(args.write_mode, args.compress_probability),
        "jpeg_quality": args.jpeg_quality,
    }
    for split in ("train", "val"):
        out = write_beton(
            args.src / split,
            args.out / beton_file_name(split, **settings),
            max_resolution=args.max_resolution,
            jpeg_quality=args.jpeg_quality,
            compress_probability=args.compress_probability,
            write_mode=args.write_mode,
            num_workers=args.num_workers,
            chunk_size=args.chunk_size,
            force=args.force,
        )
        print(f"wrote {out}")
    out_dir = args.out.resolve()  # absolute: a SLURM job may start in another folder
    print(f"train on them with: acdc-train experiment=resnet50_imagenet_acdc85_quant {config_overrides(out_dir, settings)}")
    if all(float(v) == float(REFERENCE_SETTINGS[k]) for k, v in settings.items()):
        print(f"  (or export IMAGENET_BETON_DIR={out_dir} instead of data.beton_dir)")


def _digits(args: argparse.Namespace) -> None:
    from acdc_exp.data.beton import check_beton  # lazy: --help and bad arguments answer before torch loads
    from acdc_exp.data.digits import ensure_digits

    files = ensure_digits(args.out)
    for path in (files.train_beton, files.val_beton):
        print(f"{path}: {check_beton(path).num_samples} images")


def _synth(args: argparse.Namespace) -> None:
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
        args.run(args)
    except AcdcError as exc:
        print(f"acdc-data: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
