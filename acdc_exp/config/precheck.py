"""What a command line gets checked for before Hydra starts anything (``cli/common.py``).

A run is composed and handed to the command's ``prepare`` (what the job itself does first:
for acdc-train, recipe and validation). A multirun (``-m``) is expanded into its jobs as
Hydra's BasicSweeper expands it (the sweeper's ``hydra.sweeper.params``, e.g. from a
``sweep=`` config, then the command line, through Hydra's override parser and
``BasicSweeper.split_arguments``), each job composed as the launcher composes it
(``load_sweep_config``) and prepared against the launcher preset that would run it. A bad job
is one line naming it; nothing is launched, queued or written.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from hydra import initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from acdc_exp.config.compose import config_dir, finalize, hydra_error_line
from acdc_exp.config.schema import register_configs
from acdc_exp.config.variants import typed_groups
from acdc_exp.data.settings import batches_for_rank
from acdc_exp.errors import AcdcError, ConfigError
from acdc_exp.registries import DATA

# Hydra's flags that show something instead of running (--cfg, --help, --info, ...) or compose
# from elsewhere (--config-dir/-name/-path): Hydra answers them itself, unchecked
_SHOW_FLAGS = ("cfg", "package", "info", "shell_completion", "experimental_rerun")
_ELSEWHERE_FLAGS = ("config_path", "config_name", "config_dir")
# the flags of which Hydra takes one: {flag: its argparse name}
_COMMANDS = {"-r": "run", "-m": "multirun", "--cfg": "cfg", "--info": "info", "--shell-completion": "shell_completion"}
BASIC_SWEEPER = f"{BasicSweeper.__module__}.{BasicSweeper.__name__}"
DEMO_DATA = "digits"  # configs/train.yaml's data option: the demo's model and schedule are made for it
REFERENCE = "resnet50_imagenet_acdc85_quant"  # the experiment to name where a real dataset is asked for


@dataclass(frozen=True)
class Launch:
    """What the launcher preset (``hydra/launcher=...``) gives each job of a multirun."""

    preset: str
    nodes: int = 1
    tasks_per_node: int = 1  # DDP ranks per node (one per GPU on the GPU presets)
    gpus_per_node: int = 0

    @property
    def ranks(self) -> int:
        return self.nodes * self.tasks_per_node

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @classmethod
    def of(cls, hydra_cfg: DictConfig) -> "Launch":
        """From a composed ``hydra`` node (``HydraConfig.get()`` in an app); a launcher without
        SLURM's fields (basic) runs one process."""
        launcher = hydra_cfg.launcher
        return cls(
            preset=str(hydra_cfg.runtime.choices.get("hydra/launcher")),
            nodes=int(launcher.get("nodes") or 1),
            tasks_per_node=int(launcher.get("tasks_per_node") or 1),
            gpus_per_node=int(launcher.get("gpus_per_node") or 0),
        )


# cfg, the job's overrides, the launch (None: a run, or the job itself) -> the config it runs
Prepare = Callable[[DictConfig, List[str], Optional[Launch]], DictConfig]


def run_mode(argv: Sequence[str], config_name: str) -> Optional[Tuple[RunMode, List[str]]]:
    """(RUN or MULTIRUN, the overrides) as Hydra reads ``argv``; None where Hydra shows
    something instead, composes from elsewhere, or refuses the flags itself. ConfigError for
    two commands at once (``-m --cfg job``)."""
    try:  # Hydra's own parser: a flag means what it means to Hydra
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            args = get_args_parser().parse_args(list(argv))
    except SystemExit:  # --version, or a usage error Hydra prints itself
        return None
    if args.help or args.hydra_help:  # answered before anything else
        return None
    commands = [flag for flag, given in _COMMANDS.items() if getattr(args, given) not in (None, False)]
    if len(commands) > 1:  # Hydra's own answer is a traceback
        raise ConfigError(f"{' and '.join(commands)} cannot be given together; allowed: one of {', '.join(_COMMANDS)}")
    if any(getattr(args, flag) for flag in _SHOW_FLAGS + _ELSEWHERE_FLAGS):
        return None
    overrides = list(args.overrides)
    if args.multirun:
        return RunMode.MULTIRUN, overrides
    # Hydra's run_hydra: the composed hydra.mode decides (a sweep config may set MULTIRUN itself)
    with _hydra() as hydra:
        mode = hydra.get_mode(config_name=config_name, overrides=overrides)
    return (mode if mode is not None else RunMode.RUN), overrides


def check_run(overrides: Sequence[str], config_name: str, prepare: Optional[Prepare]) -> Optional[DictConfig]:
    """The run's config composed and prepared as its job will be: what ``prepare`` returns, so
    the job need not prepare it again (None without ``prepare``). ConfigError: one line."""
    with _hydra() as hydra:
        cfg = hydra.compose_config(config_name, list(overrides), run_mode=RunMode.RUN, from_shell=False)
        task = task_overrides(cfg.hydra)
    return None if prepare is None else prepare(_job_config(cfg), task, None)


def check_sweep(overrides: Sequence[str], config_name: str, prepare: Optional[Prepare]) -> List[str]:
    """One line per bad job of the multirun (``job 3 (sparsity.sparsity=1.5): ...``), or one
    for all when every job fails alike; empty when all jobs are good. A bad override of the
    command line itself is a ConfigError (one line)."""
    with _hydra() as hydra:
        master = hydra.compose_config(config_name, list(overrides), run_mode=RunMode.MULTIRUN, from_shell=True)
        if master.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
            return []  # another sweeper draws its jobs as it goes: they cannot be listed up front
        jobs = _expand(master, hydra)
        labels = _labels(jobs)
        composed = [_compose_job(hydra, master, job) for job in jobs]
    launch = Launch.of(master.hydra)
    bad = []  # (job number, label, message)
    for num, (label, job) in enumerate(zip(labels, composed)):
        error = job if isinstance(job, str) else _prepare_error(prepare, *job, launch)
        if error is not None:
            bad.append((num, label, error))
    if len(jobs) > 1 and len(bad) == len(jobs) and len({error for _, _, error in bad}) == 1:
        return [f"all {len(jobs)} jobs: {bad[0][2]}"]  # a value no job can run with: said once
    return [f"job {num}{f' ({label})' if label else ''}: {error}" for num, label, error in bad]


@contextlib.contextmanager
def _hydra():
    """Hydra initialized on the app's configs, as ``hydra.main`` initializes it; Hydra's
    composition errors come out as one-line ConfigErrors."""
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            yield GlobalHydra.instance().hydra
    except AcdcError:
        raise
    except Exception as exc:  # Hydra and OmegaConf composition errors
        raise ConfigError(hydra_error_line(exc)) from None


def _expand(master: DictConfig, hydra) -> List[List[str]]:
    """Every job's overrides, in Hydra's job order (``hydra.job.num``): BasicSweeper.sweep."""
    params = [f"{key}={value}" for key, value in (master.hydra.sweeper.params or {}).items()]  # its _parse_config
    parsed = OverridesParser.create(config_loader=hydra.config_loader).parse_overrides(params + task_overrides(master.hydra))
    batches = BasicSweeper.split_arguments(parsed, master.hydra.sweeper.max_batch_size)
    return [list(job) for batch in batches for job in batch]


def _labels(jobs: List[List[str]]) -> List[str]:
    """Each job's overrides that differ between the jobs: what tells them apart."""
    varying = [i for i in range(len(jobs[0])) if len({job[i] for job in jobs}) > 1]
    return [" ".join(job[i] for i in varying) for job in jobs]


def _compose_job(hydra, master: DictConfig, job: List[str]):
    """(config, overrides) of the job as its launcher composes it, or its one-line error."""
    try:
        # typed as the job will type it: an experiment's key the swept variant lacks fails here
        cfg = typed_groups(hydra.config_loader.load_sweep_config(master, job))
    except Exception as exc:  # Hydra and OmegaConf composition errors
        return _composition_error(exc, master, job)
    overrides = task_overrides(cfg.hydra)
    return _job_config(cfg), overrides


def task_overrides(hydra_node: DictConfig) -> List[str]:
    """The command line's overrides (of a composed ``hydra`` node) as written: an interpolation
    in one (``paths.runs_root=${hydra:runtime.cwd}/runs``) is the job's to resolve, as Hydra
    keeps it (resolve=False)."""
    return [str(o) for o in OmegaConf.to_container(hydra_node.overrides.task, resolve=False)]


def _job_config(cfg: DictConfig) -> DictConfig:
    """What the task function gets: the config without its ``hydra`` node (Hydra's run_job)."""
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _prepare_error(prepare: Optional[Prepare], cfg: DictConfig, overrides: List[str], launch: Launch) -> Optional[str]:
    if prepare is None:
        return None
    try:
        prepare(cfg, overrides, launch)
    except AcdcError as exc:
        return " ".join(str(exc).split())
    except OmegaConfBaseException as exc:  # e.g. an interpolation the job could not resolve
        return hydra_error_line(exc)
    return None


_NOT_IN_SCHEMA = re.compile(r"Key '[^']+' not in '\w+'")
_FULL_KEY = re.compile(r"full_key: ([\w.]+)")


def _composition_error(exc: BaseException, master: DictConfig, job: List[str]) -> str:
    """Hydra's line; where the sweep gives an experiment a group option whose schema lacks a key
    the experiment sets (AC/DC settings on a GMP job), what to do about it."""
    line = hydra_error_line(exc)
    text, choices = str(exc), master.hydra.runtime.choices
    schema, key = _NOT_IN_SCHEMA.search(text), _FULL_KEY.search(text)
    experiment = choices.get("experiment")
    if not (schema and key and experiment):
        return line
    group = key.group(1).split(".")[0]
    option = next((o.split("=", 1)[1] for o in job if o.split("=", 1)[0].lstrip("+") == group), None)
    own = choices.get(group)  # the experiment's own option of the group
    if option is None or own is None or not (Path(config_dir()) / group / "experiment").is_dir():
        return line
    sweep = choices.get("sweep")
    runs = f"sweep={sweep} runs " if sweep else ""
    return (
        f"{runs}experiment={experiment} with {group}={option}: the experiment sets {key.group(1)}, which "
        f"{group}={option} does not have ({schema.group(0)}); allowed: move the experiment's {group}={own}-only "
        f"settings to configs/{group}/experiment/{own}_{experiment}.yaml (read only with {group}={own}, as for "
        f"experiment={REFERENCE}), or sweep without {group}={option}"
    )


def group_choices(overrides: Sequence[str]) -> dict:
    """{group: option} of the ``group=option`` overrides (``model=resnet50``, ``+data=x``)."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return {o.key_or_group: o.value() for o in parsed if "." not in o.key_or_group and isinstance(o.value(), str)}


def check_demo_on_other_data(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """``data=<a real dataset>`` alone keeps the digits demo's model and schedule: refused, as a
    small model trained 30 epochs on ImageNet is never what was meant. The built-in small-image
    datasets (their variants' ``small_images`` trait: digits, Fashion-MNIST) are what that
    model is made for."""
    choices = group_choices(overrides)
    data = choices.get("data")
    if data is None or "experiment" in choices or "model" in choices or DATA.variant(cfg.data).trait("small_images"):
        return
    from acdc_exp.models.factory import model_label  # torch behind it: --help never loads it

    envs = sorted(set(re.findall(r"oc\.env:(\w+)", str(OmegaConf.to_container(cfg.data, resolve=False)))))
    paths = f" with {' or '.join(envs)} set" if envs else ""
    raise ConfigError(
        f"data={data} with no experiment= or model= would train the digits demo's model and schedule on it "
        f"(model {model_label(cfg.model)}, {cfg.trainer.epochs} epochs, lr_schedule {cfg.lr_schedule.name}); "
        f"allowed: experiment={REFERENCE} data={data}{paths}, or name model= to train another model on it"
    )


def check_launch(cfg: DictConfig, launch: Launch) -> None:
    """A job against the preset that runs it: no multi-GPU job of the digits demo, and a
    global batch that splits over its ranks as ``build_data`` splits it."""
    if launch.gpus > 1 and DATA.variant(cfg.data).trait("demo"):
        from acdc_exp.models.factory import model_label  # torch behind it: --help never loads it

        raise ConfigError(
            f"hydra/launcher={launch.preset} gives each job {launch.gpus} GPUs, and this job trains the digits demo "
            f"(model {model_label(cfg.model)}, data={DEMO_DATA}); allowed: name the experiment to run "
            f"(e.g. experiment={REFERENCE}), or run the demo with hydra/launcher=slurm_local or the default launcher"
        )
    if launch.ranks > 1:
        try:
            batches_for_rank(cfg.data, 0, launch.ranks)
        except AcdcError as exc:
            raise ConfigError(f"hydra/launcher={launch.preset} runs {launch.ranks} ranks per job: {exc}") from None


def prepare_train_job(cfg: DictConfig, overrides: List[str], launch: Optional[Launch] = None) -> DictConfig:
    """What an acdc-train job does before it trains (and the precheck, for each job of a sweep,
    with the launcher preset's ``launch``): the recipe applied and every value validated."""
    check_demo_on_other_data(cfg, overrides)
    cfg = finalize(cfg, overrides)
    if launch is not None:
        check_launch(cfg, launch)
    return cfg
