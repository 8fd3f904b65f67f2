"""What every console script shares: one-line errors and Hydra-style override handling."""

from __future__ import annotations

import sys
from typing import Callable, NoReturn, Sequence

import hydra
from omegaconf import DictConfig

from acdc_exp.config.compose import compose_config, config_dir, hydra_error_line
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
    try:
        compose_config(list(argv), config_name=config_name)
    except AcdcError as exc:
        die(prog, str(exc))
    except Exception as exc:  # hydra / omegaconf composition errors
        die(prog, hydra_error_line(exc))


def hydra_command(prog: str, config_name: str, task: Callable[[DictConfig], object]) -> None:
    """Run ``task`` as a Hydra app on ``configs/<config_name>.yaml``: overrides, ``--help``
    (the command's config groups), ``--cfg job``; a bad override is one line and exit 2."""
    register_configs()
    argv = sys.argv[1:]
    if plain_overrides(argv):
        precheck_overrides(prog, argv, config_name)
    hydra.main(config_path=config_dir(), config_name=config_name, version_base="1.3")(task)()


def guarded(prog: str, fn: Callable[[], object]) -> object:
    try:
        return fn()
    except AcdcError as exc:
        die(prog, str(exc))
    except KeyboardInterrupt:
        die(prog, "interrupted", 130)
