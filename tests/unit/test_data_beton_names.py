""".beton names: what ``acdc-data write`` writes is what the ImageNet FFCV config reads, with
no renaming; a missing file is one line naming it and the command that writes it."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import torch

from acdc_exp.cli.data import main as data_main
from acdc_exp.config.compose import compose_config
from acdc_exp.data import build_data
from acdc_exp.data.beton import check_beton
from acdc_exp.data.beton_names import REFERENCE_SETTINGS, beton_file_name
from acdc_exp.errors import DataError

torch.set_num_threads(1)
EXP = "experiment=resnet50_imagenet_acdc85_quant"
CLASSES, PER_CLASS, VAL_PER_CLASS = 2, 3, 2


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("names") / "tree"
    args = ["synth", "--out", str(out), "--classes", str(CLASSES), "--per-class", str(PER_CLASS)]
    args += ["--val-per-class", str(VAL_PER_CLASS), "--min-side", "40", "--max-side", "70"]
    assert data_main(args) == 0
    return out


def _write(tree: Path, out: Path, capsys, *flags: str) -> list[str]:
    """Run ``acdc-data write``; return the overrides it says to train with."""
    assert data_main(["write", "--src", str(tree), "--out", str(out), "--num-workers", "1", *flags]) == 0
    lines = capsys.readouterr().out.splitlines()
    advice = [line for line in lines if line.startswith("train on them with: ")]
    assert len(advice) == 1, lines
    words = shlex.split(advice[0])
    return words[words.index(EXP) + 1 :]


def test_rule():
    assert beton_file_name("train", 500, 0.5, 90) == "train_500_0.50_90.beton"
    assert beton_file_name("val", 64, 1, 75) == "val_64_1.00_75.beton"


def test_default_write_is_what_the_config_reads(tree, tmp_path, capsys):
    """No settings anywhere: the writer's names are the ImageNet config's default names."""
    out = tmp_path / "betons"
    overrides = _write(tree, out, capsys)
    assert overrides == [f"data.beton_dir={out}"]
    assert sorted(p.name for p in out.iterdir()) == sorted(beton_file_name(s, **REFERENCE_SETTINGS) for s in ("train", "val"))
    cfg = compose_config([EXP, *overrides]).data
    assert Path(cfg.train_path) == out / "train_500_0.50_90.beton" and Path(cfg.val_path) == out / "val_500_0.50_90.beton"
    assert check_beton(cfg.train_path).num_samples == CLASSES * PER_CLASS
    assert check_beton(cfg.val_path).num_samples == CLASSES * VAL_PER_CLASS
    # the config's defaults are the reference settings the CLI writes by default
    assert {k: cfg[k] for k in REFERENCE_SETTINGS} == REFERENCE_SETTINGS


def test_other_settings_are_named_and_the_printed_overrides_find_them(tree, tmp_path, capsys):
    out = tmp_path / "small"
    overrides = _write(tree, out, capsys, "--max-resolution", "32", "--write-mode", "jpg", "--jpeg-quality", "80")
    assert sorted(overrides) == sorted(
        [f"data.beton_dir={out}", "data.max_resolution=32", "data.compress_probability=1.0", "data.jpeg_quality=80"]
    )
    cfg = compose_config([EXP, *overrides]).data
    assert Path(cfg.train_path).name == "train_32_1.00_80.beton"
    assert check_beton(cfg.train_path).max_side <= 32 and check_beton(cfg.val_path).num_samples == CLASSES * VAL_PER_CLASS
    # explicit files still override the rule
    cfg = compose_config([EXP, f"data.train_path={out / 'val_32_1.00_80.beton'}"]).data
    assert cfg.train_path == str(out / "val_32_1.00_80.beton") and cfg.val_path == "/data/imagenet/val_500_0.50_90.beton"


@pytest.mark.parametrize(
    "overrides, needles",
    [
        ([], ["train_500_0.50_90.beton", "acdc-data write --src", "--out {d}", "data.beton_dir"]),
        (["data.max_resolution=96"], ["train_96_0.50_90.beton", "--out {d} --max-resolution 96"]),
    ],
)
def test_missing_file_is_one_line_with_the_command(tmp_path, overrides, needles):
    cfg = compose_config([EXP, f"data.beton_dir={tmp_path}", *overrides]).data
    with pytest.raises(DataError) as exc:
        build_data(cfg, data_cache=str(tmp_path), device=torch.device("cpu"), seed=0)
    text = str(exc.value)
    assert "\n" not in text and str(tmp_path / Path(cfg.train_path).name) in text
    for needle in needles:
        assert needle.format(d=tmp_path) in text, text


def test_unset_setting_is_one_line(tmp_path):
    for override, needle in [
        ("data.beton_dir=null", "data.beton_dir is not set"),
        ("data.jpeg_quality=null", "needs jpeg_quality (null given)"),
    ]:
        cfg = compose_config([EXP, override]).data
        with pytest.raises(DataError) as exc:
            build_data(cfg, data_cache=str(tmp_path), device=torch.device("cpu"), seed=0)
        assert "\n" not in str(exc.value) and needle in str(exc.value)
