"""Bad data inputs get a one-line DataError naming the bad value (and the CLI exits 2)."""

from __future__ import annotations

import shutil

import pytest
import torch
from data_helpers import data_config, make_synthetic_dataset

from acdc_exp.cli.data import main as data_main
from acdc_exp.data import build_data
from acdc_exp.data.beton import check_beton
from acdc_exp.data.beton_writer import write_beton
from acdc_exp.data.synthetic import make_image_tree
from acdc_exp.errors import DataError

torch.set_num_threads(1)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("loader", ["ffcv", "folder"])
def test_missing_path_is_named(synth, tmp_path, loader):
    missing = tmp_path / "nowhere" / ("train.beton" if loader == "ffcv" else "train")
    cfg = data_config(loader, synth, train_path=str(missing))
    with pytest.raises(DataError) as exc:
        build_data(cfg, data_cache=str(tmp_path), device=CPU, seed=0)
    assert str(missing) in _one_line(exc)


def test_unset_path(synth, tmp_path):
    cfg = data_config("ffcv", synth, name="imagenet_ffcv", val_path=None)
    with pytest.raises(DataError, match="data.val_path is not set"):
        build_data(cfg, data_cache=str(tmp_path), device=CPU, seed=0)


def test_empty_class_folder(tmp_path, synth):
    tree = make_image_tree(tmp_path / "tree", classes=2, per_class=1, min_side=20, max_side=30)
    (tree / "train" / "class_99").mkdir()
    with pytest.raises(DataError) as exc:
        write_beton(tree / "train", tmp_path / "train.beton", num_workers=1)
    assert "class_99" in _one_line(exc) and "no images" in str(exc.value)
    cfg = data_config("folder", synth, train_path=str(tree / "train"))
    with pytest.raises(DataError, match="class_99"):
        build_data(cfg, data_cache=str(tmp_path), device=CPU, seed=0)
    (tree / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        write_beton(tree / "empty", tmp_path / "x.beton")


@pytest.mark.parametrize("keep", [0, 10, 0.5, 0.999])
def test_truncated_beton(synth, tmp_path, keep):
    data = synth["train"].read_bytes()
    cut = tmp_path / "cut.beton"
    cut.write_bytes(data[: int(len(data) * keep) if keep < 1 else int(keep)])
    with pytest.raises(DataError) as exc:
        check_beton(cut)
    assert "corrupt or truncated" in _one_line(exc) and str(cut) in str(exc.value)
    cfg = data_config("ffcv", synth, train_path=str(cut))
    with pytest.raises(DataError, match="corrupt or truncated"):
        build_data(cfg, data_cache=str(tmp_path), device=CPU, seed=0)


def test_foreign_file_is_not_a_beton(tmp_path):
    junk = tmp_path / "junk.beton"
    junk.write_bytes(b"this is not a beton file at all, just some text" * 10)
    with pytest.raises(DataError, match="format version"):
        check_beton(junk)


def test_labels_beyond_num_classes(synth, tmp_path):
    with pytest.raises(DataError, match="num_classes=2"):
        build_data(data_config("ffcv", synth, num_classes=2), data_cache=str(tmp_path), device=CPU, seed=0)
    with pytest.raises(DataError, match="num_classes=2"):
        build_data(data_config("folder", synth, num_classes=2), data_cache=str(tmp_path), device=CPU, seed=0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(res=0), "data.res=0"),
        (dict(val_res=-32), "data.val_res=-32"),
        (dict(res=100000), "data.res=100000"),
        (dict(min_res=192, max_res=160, start_ramp=0, end_ramp=5), "min_res=192 is larger"),
        (dict(min_res=160, max_res=192), "missing data.start_ramp, data.end_ramp"),
        (dict(min_res=160, max_res=192, start_ramp=8, end_ramp=2), "start_ramp=8"),
        (dict(loader="dali"), "data.loader='dali'; allowed: ffcv, folder"),
        (dict(order="shuffled"), "data.order='shuffled'"),
        (dict(batch_size=0), "data.batch_size=0"),
        (dict(center_crop_ratio=1.5), "center_crop_ratio=1.5"),
        (dict(crop_scale_min=0.0), "crop_scale_min=0.0"),
        (dict(std=[1.0, 0.0, 1.0]), "data.std"),
        (dict(mean=[1.0, 2.0]), "3 values"),
        (dict(order="quasi_random"), "os_cache=false"),
        (dict(limit_train_batches=0), "limit_train_batches=0"),
        (dict(batch_size=100), "fills no batch of data.batch_size=100"),
        (dict(batch_size=100, loader="folder"), "fills no batch of data.batch_size=100"),
    ],
)
def test_bad_settings(synth, tmp_path, overrides, message):
    overrides = dict(overrides)
    with pytest.raises(DataError) as exc:
        build_data(data_config(overrides.pop("loader", "ffcv"), synth, **overrides), data_cache=str(tmp_path), device=CPU, seed=0)
    assert message in _one_line(exc)


def test_overwrite_needs_force(synth, tmp_path):
    out = tmp_path / "val.beton"
    shutil.copy(synth["val"], out)
    before = out.read_bytes()
    with pytest.raises(DataError) as exc:
        write_beton(synth["tree"] / "val", out, num_workers=1)
    assert "already exists" in _one_line(exc) and "--force" in str(exc.value)
    assert out.read_bytes() == before
    write_beton(synth["tree"] / "val", out, num_workers=1, write_mode="raw", force=True)
    assert check_beton(out).num_samples == 12
    assert [p.name for p in tmp_path.iterdir()] == ["val.beton"]  # no temp files left


@pytest.mark.timeout(120)
def test_unreadable_image_fails_instead_of_hanging(tmp_path):
    """FFCV's writer waits forever for a crashed worker; the writer reports the file."""
    tree = make_image_tree(tmp_path / "tree", classes=2, per_class=2, min_side=20, max_side=30)
    bad = tree / "train" / "class_01" / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    out = tmp_path / "train.beton"
    with pytest.raises(DataError) as exc:
        write_beton(tree / "train", out, num_workers=2, chunk_size=1)
    assert "broken.JPEG" in _one_line(exc)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["tree"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(write_mode="png"), "write_mode='png'"),
        (dict(jpeg_quality=0), "jpeg_quality=0"),
        (dict(compress_probability=2.0), "compress_probability=2.0"),
        (dict(max_resolution=0), "max_resolution=0"),
    ],
)
def test_bad_writer_arguments(synth, tmp_path, kwargs, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        write_beton(synth["tree"] / "val", tmp_path / "v.beton", **kwargs)


def test_cli_errors_exit_2_with_one_line(tmp_path, capsys):
    assert data_main(["write", "--src", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing" in err and err.startswith("acdc-data: error:")
    with pytest.raises(SystemExit) as exc:
        data_main(["write", "--src", str(tmp_path), "--out", str(tmp_path), "--write-mode", "x"])
    assert exc.value.code == 2
    assert data_main(["synth", "--out", str(tmp_path / "s"), "--classes", "1"]) == 2
    assert "at least 2 classes" in capsys.readouterr().err
