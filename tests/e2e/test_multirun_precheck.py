"""``acdc-train -m``: every job of the sweep is composed and validated before any is launched,
as Hydra's BasicSweeper would expand it (command line and ``sweep=`` configs); a bad job is one
line naming it, exit 2, and nothing is launched, queued or written. Also the sweeps with the
reference experiment, the launcher presets against the digits demo, and ``data=`` alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli, small_overrides
from hydra.types import RunMode

from acdc_exp.config.compose import compose_config, config_dir
from acdc_exp.config.precheck import check_run, check_sweep, prepare_train_job, run_mode
from acdc_exp.errors import ConfigError
from acdc_exp.registries import SPARSITY

REFERENCE = "experiment=resnet50_imagenet_acdc85_quant"


def _train(args: list, tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """The acdc-train console script with runs (and sweeps) under ``tmp_path/runs``."""
    env = {**os.environ, "ACDC_RUNS_ROOT": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    return run_cli("acdc-train", *args, timeout=timeout, cwd=REPO, env=env)


def _error_lines(proc: subprocess.CompletedProcess) -> list:
    return [ln for ln in proc.stderr.splitlines() if ln.strip()]


def _sweep(overrides: list) -> tuple:
    """(error lines, [(overrides, prepared config)] of the jobs that prepared) of check_sweep."""
    jobs = []

    def record(cfg, job_overrides, launch):
        out = prepare_train_job(cfg, job_overrides, launch)
        jobs.append((job_overrides, out))
        return out

    return check_sweep(overrides, "train", record), jobs


def test_bad_swept_values_are_one_line_per_bad_job_and_nothing_is_written(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = _train(["-m", "sparsity.sparsity=0.9,1.5", "optimizer.lr=0.1,-1", f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert _error_lines(proc) == [
        "acdc-train: error: job 1 (sparsity.sparsity=0.9 optimizer.lr=-1): optimizer.lr=-1.0 is negative; allowed: lr >= 0",
        "acdc-train: error: job 2 (sparsity.sparsity=1.5 optimizer.lr=0.1): "
        "sparsity.sparsity=1.5 is out of range; allowed: 0 <= sparsity <= 1",
        "acdc-train: error: job 3 (sparsity.sparsity=1.5 optimizer.lr=-1): optimizer.lr=-1.0 is negative; allowed: lr >= 0",
    ]
    assert not sweep_dir.exists() and not (tmp_path / "runs").exists()
    assert "Launching" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("flag", ["-m", "--multirun"])
def test_bad_override_under_multirun_is_one_line(flag, tmp_path):
    proc = _train([flag, "optimizer.lrr=0.1,0.2", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert proc.returncode == 2
    lines = _error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("acdc-train: error:") and "lrr" in lines[0], proc.stderr
    assert not (tmp_path / "sweep").exists()


def test_a_value_no_job_can_run_with_is_said_once():
    errors, _ = _sweep(["sweep=sparsity", "optimizer.lr=-1"])
    assert errors == ["all 4 jobs: optimizer.lr=-1.0 is negative; allowed: lr >= 0"]


def test_sweep_config_params_are_expanded_as_hydra_does():
    # the command line's sparsity.sparsity replaces the sweep's (BasicSweeper keeps the last)
    errors, jobs = _sweep(["sweep=acdc_vs_gmp", "sparsity.sparsity=0.9,1.2", "trainer.epochs=30"])
    assert errors == [
        "job 1 (sparsity=acdc sparsity.sparsity=1.2): sparsity.sparsity=1.2 is out of range; allowed: 0 <= sparsity <= 1",
        "job 3 (sparsity=gmp sparsity.sparsity=1.2): sparsity.sparsity=1.2 is out of range; allowed: 0 <= sparsity <= 1",
    ]
    assert [(SPARSITY.name_of(cfg.sparsity), cfg.sparsity.sparsity) for _, cfg in jobs] == [("acdc", 0.9), ("gmp", 0.9)]
    assert jobs[0][0] == ["sparsity=acdc", "sparsity.sparsity=0.9", "sweep=acdc_vs_gmp", "trainer.epochs=30"]


def test_good_multirun_runs_with_the_basic_launcher(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *small_overrides(), "trainer.max_steps=2", "sparsity.sparsity=0.8,0.9", f"hydra.sweep.dir={sweep_dir}"]
    proc = _train(args, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for num in (0, 1):
        assert (sweep_dir / str(num) / "checkpoints" / "last.pt").exists(), num


def test_plain_run_is_validated_before_hydra_writes_its_run_dir(tmp_path):
    proc = _train(["optimizer.lr=-1", *small_overrides()], tmp_path)
    assert proc.returncode == 2
    assert _error_lines(proc) == ["acdc-train: error: optimizer.lr=-1.0 is negative; allowed: lr >= 0"]
    assert not (tmp_path / "runs").exists()


def test_run_mode_reads_flags_as_hydra_does():
    assert run_mode(["a=1"], "train") == (RunMode.RUN, ["a=1"])
    assert run_mode(["-m", "a=1,2"], "train") == (RunMode.MULTIRUN, ["a=1,2"])
    assert run_mode(["--multirun"], "train") == (RunMode.MULTIRUN, [])
    assert run_mode(["hydra.mode=MULTIRUN", "a=1,2"], "train")[0] is RunMode.MULTIRUN
    for shown in (["--cfg", "job"], ["--cfg", "job", "-p", "sparsity"], ["--help"], ["-m", "--help"], ["--info"]):
        assert run_mode(shown, "train") is None, shown
    assert run_mode(["--config-dir", "/elsewhere", "a=1"], "train") is None
    with pytest.raises(ConfigError, match="-m and --cfg cannot be given together"):
        run_mode(["-m", "--cfg", "job"], "train")


def test_show_flags_still_answer(tmp_path):
    proc = _train(["--cfg", "job", "-p", "sparsity", REFERENCE, "sparsity=gmp"], tmp_path)
    assert proc.returncode == 0 and "_target_: acdc_exp.sparsity.methods.gmp.Gmp" in proc.stdout, proc.stderr[-2000:]
    proc = _train(["-m", "--cfg", "job"], tmp_path)
    assert proc.returncode == 2 and len(_error_lines(proc)) == 1, proc.stderr


@pytest.mark.slurm
def test_bad_sweep_on_slurm_queues_nothing(slurm_cluster, tmp_path):
    sweep_dir, name = tmp_path / "sweep", f"precheck-{uuid.uuid4().hex[:8]}"
    args = ["-m", "hydra/launcher=slurm_local", f"hydra.launcher.name={name}", f"hydra.sweep.dir={sweep_dir}"]
    proc = _train([*args, "logger=none", "sparsity.sparsity=0.9,1.5"], tmp_path)
    assert proc.returncode == 2
    assert _error_lines(proc) == [
        "acdc-train: error: job 1 (sparsity.sparsity=1.5): sparsity.sparsity=1.5 is out of range; allowed: 0 <= sparsity <= 1"
    ]
    assert not sweep_dir.exists()  # no submitit folder: nothing was submitted
    queued = subprocess.run(["squeue", "-h", "--name", name], capture_output=True, text=True, timeout=60)
    accounted = subprocess.run(["sacct", "-n", "-X", "--name", name], capture_output=True, text=True, timeout=60)
    assert queued.returncode == 0 and queued.stdout.strip() == "", queued.stdout + queued.stderr
    assert accounted.stdout.strip() == "", accounted.stdout


@pytest.mark.parametrize("preset", ["slurm_local", "slurm_1node_8gpu", "slurm_multinode"])
def test_reference_experiment_sweeps_every_sparsity(preset):
    errors, jobs = _sweep(["sweep=sparsity", REFERENCE, f"hydra/launcher={preset}"])
    assert errors == []
    reference = compose_config([REFERENCE])
    assert [cfg.sparsity.sparsity for _, cfg in jobs] == [0.8, 0.9, 0.95, 0.98]
    for _, cfg in jobs:
        assert cfg.experiment_name == reference.experiment_name and cfg.trainer.epochs == 206
        assert cfg.sparsity == {**reference.sparsity, "sparsity": cfg.sparsity.sparsity}


def test_acdc_vs_gmp_with_the_reference_experiment_is_its_gmp_baseline():
    errors, jobs = _sweep(["sweep=acdc_vs_gmp", REFERENCE, "hydra/launcher=slurm_1node_8gpu"])
    assert errors == []
    reference = compose_config([REFERENCE])
    methods = [SPARSITY.name_of(cfg.sparsity) for _, cfg in jobs]
    assert methods == ["acdc"] * 3 + ["gmp"] * 3
    gmp = compose_config(["sparsity=gmp"]).sparsity
    for _, cfg in jobs:
        s = cfg.sparsity
        assert s.sparsity in (0.9, 0.95, 0.98) and cfg.trainer.epochs == reference.trainer.epochs
        if SPARSITY.name_of(s) == "acdc":  # the reference job itself, at the swept sparsity
            assert s == {**reference.sparsity, "sparsity": s.sparsity}
        else:  # the same layers, blocks and pruning window; GMP's own ramp settings
            for key in ("mask_type", "global_sparsity", "params", "start_epoch", "end_epoch", "min_kept_per_channel"):
                assert s[key] == reference.sparsity[key], key
            assert (s.init_sparsity, s.update_frequency) == (gmp.init_sparsity, gmp.update_frequency)


def test_experiment_method_settings_are_named_after_an_option_and_an_experiment():
    """configs/sparsity/experiment/<option>_<experiment>.yaml is read optionally: a misspelt
    name would be skipped without a word, so every file must be found by its pair."""
    configs = Path(config_dir())
    files = sorted((configs / "sparsity" / "experiment").glob("*.yaml"))
    assert files
    experiments = [p.stem for p in (configs / "experiment").glob("*.yaml")]
    for path in files:
        pair = [(o, e) for e in experiments for o in ("acdc", "gmp") if path.stem == f"{o}_{e}"]
        assert len(pair) == 1, path.name
        option, experiment = pair[0]
        composed = compose_config([f"experiment={experiment}", f"sparsity={option}"]).sparsity
        for key, value in yaml.safe_load(path.read_text()).items():
            assert composed[key] == value, (path.name, key)


def test_an_experiment_swept_to_a_method_it_does_not_fit_is_one_line(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    shutil.copytree(config_dir(), configs)  # links (sweep/) copied as their files
    (configs / "experiment" / "tiny_acdc.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /sparsity: acdc\nexperiment_name: tiny_acdc\n"
        "sparsity:\n  dense_phase_warmup_epochs: 0\n"
    )
    monkeypatch.setenv("ACDC_CONFIG_DIR", str(configs))
    errors, _ = _sweep(["sweep=acdc_vs_gmp", "experiment=tiny_acdc"])
    assert len(errors) == 3 and all(e.startswith(f"job {n} (sparsity=gmp") for n, e in zip((3, 4, 5), errors))
    assert errors[0].split(": ", 1)[1] == (
        "sweep=acdc_vs_gmp runs experiment=tiny_acdc with sparsity=gmp: the experiment sets "
        "sparsity.dense_phase_warmup_epochs, which sparsity=gmp does not have (Key 'dense_phase_warmup_epochs' not in "
        "'GmpConfig'); allowed: move the experiment's sparsity=acdc-only settings to "
        "configs/sparsity/experiment/acdc_tiny_acdc.yaml (read only with sparsity=acdc, as for "
        "experiment=resnet50_imagenet_acdc85_quant), or sweep without sparsity=gmp"
    )


@pytest.mark.parametrize("preset, gpus", [("slurm_1node_8gpu", 8), ("slurm_multinode", 32)])
def test_multi_gpu_preset_on_the_digits_demo_is_one_line(preset, gpus, tmp_path):
    errors, _ = _sweep(["sweep=sparsity", f"hydra/launcher={preset}", "logger=wandb"])
    assert errors == [
        f"all 4 jobs: hydra/launcher={preset} gives each job {gpus} GPUs, and this job trains the digits demo "
        "(model small_resnet, data=digits); allowed: name the experiment to run "
        "(e.g. experiment=resnet50_imagenet_acdc85_quant), or run the demo with hydra/launcher=slurm_local or the "
        "default launcher"
    ]
    assert _sweep(["sweep=sparsity", "hydra/launcher=slurm_local"])[0] == []


def test_each_job_batch_splits_over_the_preset_ranks():
    errors, _ = _sweep([REFERENCE, "hydra/launcher=slurm_multinode", "data.batch_size=100,256"])
    assert errors == [
        "job 0 (data.batch_size=100): hydra/launcher=slurm_multinode runs 32 ranks per job: data.batch_size=100 is "
        "the global batch and does not split evenly over 32 processes; allowed: a multiple of 32"
    ]


def test_data_alone_keeps_the_demo_model_and_is_one_line(tmp_path):
    proc = _train(["data=imagenet_folder"], tmp_path)
    assert proc.returncode == 2
    assert _error_lines(proc) == [
        "acdc-train: error: data=imagenet_folder with no experiment= or model= would train the digits demo's model "
        "and schedule on it (model small_resnet, 30 epochs, lr_schedule warmup_cosine); allowed: "
        "experiment=resnet50_imagenet_acdc85_quant data=imagenet_folder with IMAGENET_DIR set, or name model= to "
        "train another model on it"
    ]
    assert not (tmp_path / "runs").exists()
    # swept, it is that job's line
    errors, _ = _sweep(["data=digits,imagenet_folder"])
    assert len(errors) == 1 and errors[0].startswith("job 1 (data=imagenet_folder): data=imagenet_folder with no")


def test_reference_experiment_on_the_image_folder_reads_imagenet_dir(monkeypatch):
    monkeypatch.setenv("IMAGENET_DIR", "/datasets/imagenet")
    cfg = check_run([REFERENCE, "data=imagenet_folder"], "train", prepare_train_job)
    assert (cfg.data.loader, cfg.data.train_path, cfg.data.val_path) == (
        "folder",
        "/datasets/imagenet/train",
        "/datasets/imagenet/val",
    )
    assert cfg.model.name == "resnet50" and cfg.data.batch_size == 256  # the torchvision builder's architecture
    assert check_run(["model=resnet18", "data=imagenet_folder"], "train", prepare_train_job).model.name == "resnet18"


def test_a_config_that_asks_for_a_multirun_itself_has_its_jobs_checked(tmp_path):
    """hydra.mode=MULTIRUN from the composed config (a sweep file may set it) sweeps without -m,
    as Hydra decides; its jobs are checked, not the un-swept config."""
    assert run_mode(["++hydra.mode=MULTIRUN", "seed=0,1"], "train")[0] is RunMode.MULTIRUN
    proc = _train(["++hydra.mode=MULTIRUN", "sparsity.sparsity=0.8,1.5", "--check"], tmp_path)
    assert proc.returncode == 2 and _error_lines(proc)[-1].startswith("acdc-train: error: job 1 (sparsity.sparsity=1.5)")


def test_check_flag_checks_and_launches_nothing(tmp_path):
    # an interpolation in an override is the job's to resolve, as Hydra keeps it
    runs_root = "paths.runs_root=${hydra:runtime.cwd}/elsewhere"
    for args in ([runs_root], ["-m", "seed=0,1", runs_root], ["-m", "sweep=acdc_vs_gmp", REFERENCE]):
        proc = _train([*args, "--check"], tmp_path)
        assert proc.returncode == 0 and "nothing launched (--check)" in proc.stdout, (args, proc.stderr[-2000:])
    proc = _train(["--cfg", "job", "--check"], tmp_path)
    assert proc.returncode == 2 and len(_error_lines(proc)) == 1 and "--check checks a run or a sweep" in proc.stderr
    assert not (tmp_path / "runs").exists() and not (REPO / "elsewhere").exists()
