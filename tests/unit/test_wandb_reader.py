"""The .wandb reader on real files written by wandb offline: multi-block records, torn
tails (a killed run) and corruption."""

from __future__ import annotations

from pathlib import Path

import pytest
import wandb
from wandb_records import find_run_files, read_file, read_run

from acdc_exp.errors import DataError
from acdc_exp.loggers.wandb_log_file import BLOCK, wait_until_complete


@pytest.fixture(scope="module")
def big_run(tmp_path_factory) -> Path:
    """A run whose config record alone spans several 32 KiB blocks, plus many history rows."""
    root = tmp_path_factory.mktemp("wb")
    run = wandb.init(mode="offline", project="reader", dir=str(root), reinit="create_new", config={"blob": "x" * 100_000, "n": 7})
    for step in range(1500):
        run.log({"loss": 1.0 / (step + 1), "tag": f"s{step}"}, step=step)
    run.summary["best"] = 0.5
    sync_file = run.settings.sync_file
    run.finish()
    assert wait_until_complete(sync_file, timeout=60)  # finish() returns before the file is flushed
    return root


def test_reads_records_across_blocks(big_run: Path):
    (path,) = find_run_files(big_run)
    assert path.stat().st_size > 3 * BLOCK
    run = read_run(big_run)
    assert run.config["blob"] == "x" * 100_000 and run.config["n"] == 7
    assert [r["_step"] for r in run.history] == list(range(1500))
    assert run.history[1499]["loss"] == pytest.approx(1 / 1500) and run.history[3]["tag"] == "s3"
    assert run.summary["best"] == 0.5 and run.summary["loss"] == pytest.approx(1 / 1500)


def test_torn_tail_reads_the_complete_prefix(big_run: Path, tmp_path: Path):
    (path,) = find_run_files(big_run)
    data = path.read_bytes()
    torn = tmp_path / "torn.wandb"
    torn.write_bytes(data[: len(data) // 2 + 13])
    run = read_file(torn)
    steps = [r["_step"] for r in run.history]
    assert 100 < len(steps) < 1500 and steps == list(range(len(steps)))


def test_wait_until_complete_gives_up_on_a_file_without_exit(big_run: Path, tmp_path: Path):
    (path,) = find_run_files(big_run)
    assert wait_until_complete(path, timeout=0)
    torn = tmp_path / "torn.wandb"
    torn.write_bytes(path.read_bytes()[: 2 * BLOCK])
    assert not wait_until_complete(torn, timeout=0.1)


def test_corruption_and_bad_paths_are_data_errors(big_run: Path, tmp_path: Path):
    (path,) = find_run_files(big_run)
    data = bytearray(path.read_bytes())
    data[BLOCK + 500] ^= 0xFF  # inside the multi-block config record
    bad = tmp_path / "bad.wandb"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt at byte"):
        read_file(bad)
    notwandb = tmp_path / "x.wandb"
    notwandb.write_bytes(b"hello world, not a log")
    with pytest.raises(DataError, match="is not a .wandb log"):
        read_file(notwandb)
    with pytest.raises(DataError, match="does not exist"):
        read_run(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no .wandb file"):
        read_run(empty)
