"""What every console script shares: one-line errors and Hydra-style override handling."""

from __future__ import annotations

import sys
from types import MappingProxyType
from typing import Callable, List, Mapping, NoReturn, Sequence

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from acdc_exp.config.compose import compose_config, config_dir
from acdc_exp.config.schema import register_configs
from acdc_exp.errors import AcdcError

# flags after which argv is not a plain list of overrides (hydra options, multirun, help)
_NON_OVERRIDE_PREFIX = "-"


def die(prog: str, message: str, code: int = 2) -> NoReturn:
    first = " ".join(str(message).split())  # keep it to one line
    print(f"{prog}: error: {first}", file=sys.stderr)
    sys.exit(code)


def plain_overrides(argv: Sequence[str]) -> bool:
    """True when argv holds only ``key=value`` overrides (so they can be checked up front)."""
    return all(not a.startswith(_NON_OVERRIDE_PREFIX) for a in argv)


def precheck_overrides(prog: str, argv: Sequence[str], config_name: str = "train") -> None:
    """Compose once before Hydra runs the job, so a bad override is one line and exit 2."""
    guarded(prog, lambda: compose_config(list(argv), config_name=config_name))


def hydra_command(
    prog: str,
    config_name: str,
    task: Callable[[DictConfig, List[str]], object],
    renamed_flags: Mapping[str, str] = MappingProxyType({}),
) -> None:
    """Run ``task(cfg, overrides)`` as a Hydra app on ``configs/<config_name>.yaml``: overrides,
    ``--help`` (the command's config groups), ``--cfg job``; a bad override is one line and
    exit 2, and so is a flag of ``renamed_flags`` (an earlier version's flag -> its override)."""
    register_configs()
    argv = sys.argv[1:]
    old = [a for a in argv if a in renamed_flags]
    if old:
        die(prog, f"{old[0]} is now the override {renamed_flags[old[0]]}")
    if plain_overrides(argv):
        precheck_overrides(prog, argv, config_name)

    def app(cfg: DictConfig) -> object:
        return task(cfg, list(HydraConfig.get().overrides.task))

    hydra.main(config_path=config_dir(), config_name=config_name, version_base="1.3")(app)()


def guarded(prog: str, fn: Callable[[], object]) -> object:
    try:
        return fn()
    except AcdcError as exc:
        die(prog, str(exc))
    except KeyboardInterrupt:
        die(prog, "interrupted", 130)
