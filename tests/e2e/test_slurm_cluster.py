"""Smoke tests of the local one-node SLURM cluster and the Hydra submitit launcher presets.

The session fixture starts the cluster with scripts/slurm_local.sh (installing SLURM on a
fresh machine); if that fails the tests fail with the script's reason instead of skipping.
No per-test pytest timeouts: the first test also pays for the apt install on a fresh machine;
the subprocess timeouts below bound each test's own work.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from slurm_support import CONFIGS_DIR, REPO, VENV_PYTHON

APP_DIR = Path(__file__).resolve().parents[1] / "support" / "slurm_app"


@pytest.mark.slurm
def test_srun_runs_on_local_node(slurm_cluster: str) -> None:
    out = subprocess.run(["srun", "-N1", "-n1", "--time=1", "hostname"], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == slurm_cluster


@pytest.mark.slurm
def test_hydra_multirun_on_slurm(slurm_cluster: str, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    cmd = [
        str(VENV_PYTHON),
        str(APP_DIR / "app.py"),
        "-m",
        "--config-dir",
        str(CONFIGS_DIR),
        "hydra/launcher=slurm_local",
        "hydra.launcher.timeout_min=5",
        f"hydra.sweep.dir={sweep_dir}",
        "x=2,3",
    ]
    # The Hydra process blocks until both array tasks have written their results.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    results = {}
    for num in (0, 1):
        result_file = sweep_dir / str(num) / "result.json"
        assert result_file.exists(), f"job {num} wrote no result; submitit logs in {sweep_dir}/.submitit"
        results[num] = json.loads(result_file.read_text())

    assert {r["x"]: r["y"] for r in results.values()} == {2: 20, 3: 30}
    assert [results[n]["job_num"] for n in (0, 1)] == [0, 1]
    # Both ran as tasks of one SLURM array job on this node, with the one CPU the preset asks for.
    array_ids = {r["slurm_array_job_id"] for r in results.values()}
    assert len(array_ids) == 1 and None not in array_ids
    assert sorted(r["slurm_array_task_id"] for r in results.values()) == ["0", "1"]
    assert all(r["hostname"] == slurm_cluster for r in results.values())
    assert all(r["slurm_cpus_on_node"] == "1" for r in results.values())
    # submitit kept its sbatch script and logs, with the preset's resources in the script
    sbatch_files = list((sweep_dir / ".submitit").rglob("*_submission.sh"))
    assert sbatch_files, "no submitit submission script"
    script = sbatch_files[0].read_text()
    assert "#SBATCH --partition=debug" in script
    assert "#SBATCH --cpus-per-task=1" in script


def _launcher_params(preset: str) -> dict:
    """The hydra.launcher node a preset composes to (real Hydra compose, no cluster needed)."""
    with initialize_config_dir(config_dir=str(APP_DIR), version_base=None):
        cfg = compose(
            config_name="slurm_app",
            overrides=[f"hydra/launcher={preset}", f"hydra.searchpath=[file://{CONFIGS_DIR}]"],
            return_hydra_config=True,
        )
    node = cfg.hydra.launcher
    # submitit_folder/name interpolate runtime-only hydra keys; not needed here
    return {k: v for k, v in OmegaConf.to_container(node, resolve=False).items()}


@pytest.mark.slurm
@pytest.mark.parametrize(
    "preset, nodes, gpus, tasks", [("slurm_local", 1, None, 1), ("slurm_1node_8gpu", 1, 8, 8), ("slurm_multinode", 4, 8, 8)]
)
def test_launcher_presets_are_valid_submitit_parameters(
    preset: str, nodes: int, gpus: int | None, tasks: int, tmp_path: Path, slurm_cluster: str
) -> None:
    # Needs only the SLURM client tools (submitit's executor looks for srun), not free CPUs.
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params = _launcher_params(preset)
    assert params["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert (params["nodes"], params["gpus_per_node"], params["tasks_per_node"]) == (nodes, gpus, tasks)

    # Map the keys as the Hydra plugin does, then let submitit reject anything it does not know.
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    skip = {"_target_", "submitit_folder", "max_num_timeout", "name"}
    kwargs = {(k if k in base else f"slurm_{k}"): v for k, v in params.items() if k not in skip}
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm")
    executor.update_parameters(**kwargs)
    slurm = executor._executor.parameters  # the sbatch flags submitit will write
    assert slurm["nodes"] == nodes and slurm["ntasks_per_node"] == tasks
    if gpus:
        assert slurm["gpus_per_node"] == gpus
        assert params["timeout_min"] == 4320 and slurm["time"] == 4320
        assert params["additional_parameters"]["requeue"] is True
