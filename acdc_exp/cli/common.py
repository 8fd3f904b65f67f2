"""What every console script shares: one-line errors and Hydra-style override handling."""

from __future__ import annotations

import sys
from typing import Callable, NoReturn, Sequence

from acdc_exp.config.compose import hydra_error_line
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


def precheck_overrides(prog: str, argv: Sequence[str]) -> None:
    """Compose once before Hydra runs the job, so a bad override is one line and exit 2."""
    from acdc_exp.config.compose import compose_config

    try:
        compose_config(list(argv))
    except AcdcError as exc:
        die(prog, str(exc))
    except Exception as exc:  # hydra / omegaconf composition errors
        die(prog, hydra_error_line(exc))


def guarded(prog: str, fn: Callable[[], object]) -> object:
    try:
        return fn()
    except AcdcError as exc:
        die(prog, str(exc))
    except KeyboardInterrupt:
        die(prog, "interrupted", 130)
