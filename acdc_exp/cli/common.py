"""What every console script shares: one-line errors and Hydra-style override handling."""

from __future__ import annotations

import os
import sys
from types import MappingProxyType
from typing import Callable, List, Mapping, NoReturn, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from acdc_exp.config.compose import config_dir
from acdc_exp.config.precheck import Prepare, check_run, check_sweep, run_mode, task_overrides
from acdc_exp.config.schema import register_configs
from acdc_exp.config.variants import typed_groups
from acdc_exp.errors import AcdcError

# compose and validate the run, or every job of a sweep (-m), then stop: nothing is launched
CHECK_FLAG = "--check"


def die(prog: str, message: str, code: int = 2) -> NoReturn:
    first = " ".join(str(message).split())  # keep it to one line
    print(f"{prog}: error: {first}", file=sys.stderr)
    sys.exit(code)


def hydra_command(
    prog: str,
    config_name: str,
    task: Callable[[DictConfig, List[str]], object],
    renamed_flags: Mapping[str, str] = MappingProxyType({}),
    prepare: Optional[Prepare] = None,
) -> None:
    """Run ``task(cfg, overrides)`` as a Hydra app on ``configs/<config_name>.yaml``: overrides,
    ``-m`` sweeps, ``--help`` (the command's config groups), ``--cfg job``. ``prepare(cfg,
    overrides, launch)`` is what a job does first (validation); the task gets its result. It
    runs before Hydra starts anything, for the run or for every job of a sweep, so a bad
    override or value is one line and exit 2 (one line per bad job), with nothing launched or
    written; so is a flag of ``renamed_flags`` (an earlier version's flag -> its override).
    ``--check`` stops after that check (exit 0): a sweep can be checked before it is queued."""
    register_configs()
    argv = [a for a in sys.argv[1:] if a != CHECK_FLAG]
    check_only = len(argv) < len(sys.argv) - 1
    old = [a for a in argv if a in renamed_flags]
    if old:
        die(prog, f"{old[0]} is now the override {renamed_flags[old[0]]}")
    prepared = None  # the run's config, prepared by the precheck: the job does not repeat it
    mode = guarded(prog, lambda: run_mode(argv, config_name))
    if mode is not None and mode[0] is RunMode.MULTIRUN:
        bad = guarded(prog, lambda: check_sweep(mode[1], config_name, prepare))
        for line in bad[:-1]:
            print(f"{prog}: error: {line}", file=sys.stderr)
        if bad:
            die(prog, bad[-1])
    elif mode is not None:
        prepared = guarded(prog, lambda: check_run(mode[1], config_name, prepare))
    if check_only:
        if mode is None:  # Hydra would show something (--cfg, --help) or compose from elsewhere
            die(prog, f"{CHECK_FLAG} checks a run or a sweep (-m); allowed: without --cfg, --help, --info or --config-*")
        what = "every job of the sweep" if mode[0] is RunMode.MULTIRUN else "the run"
        print(f"{prog}: {what} composes and validates; nothing launched ({CHECK_FLAG})")
        sys.exit(0)

    def app(cfg: DictConfig) -> object:
        hydra_cfg = HydraConfig.get()
        overrides = task_overrides(hydra_cfg)
        cfg = guarded(prog, lambda: typed_groups(cfg))
        if prepare is not None:
            # the precheck prepared the run; a sweep's job prepares its own config
            reuse = prepared is not None and hydra_cfg.mode == RunMode.RUN
            cfg = prepared if reuse else guarded(prog, lambda: prepare(cfg, overrides, None))
        return task(cfg, overrides)

    hydra.main(config_path=guarded(prog, config_dir), config_name=config_name, version_base="1.3")(app)()


def guarded(prog: str, fn: Callable[[], object]) -> object:
    try:
        return fn()
    except AcdcError as exc:
        if getattr(exc, "every_rank", False) and os.environ.get("RANK", "0") != "0":
            # every rank found it at the same collective: rank 0 says it and exits non-zero; the
            # others exit 0, as torchrun and srun stop the remaining tasks when one fails, which
            # could cut rank 0 off before its line (preemption leaves the same way)
            sys.exit(0)
        die(prog, str(exc))
    except KeyboardInterrupt:
        die(prog, "interrupted", 130)
