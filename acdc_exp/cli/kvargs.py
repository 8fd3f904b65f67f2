"""``key=value`` arguments for the checkpoint tools (acdc-eval, acdc-export): the tool's own
keys are split off, everything else is passed on as Hydra overrides."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from acdc_exp.errors import ConfigError


def split_args(argv: Sequence[str], own: Sequence[str]) -> Tuple[Dict[str, str], List[str]]:
    """({own key: value}, [other overrides]); a bare word is an error naming it."""
    mine: Dict[str, str] = {}
    rest: List[str] = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ConfigError(f"argument {arg!r} is not key=value; allowed keys: {', '.join(own)} or Hydra overrides")
        if key in own:
            if key in mine:
                raise ConfigError(f"{key}= is given twice")
            mine[key] = value
        else:
            rest.append(arg)
    return mine, rest


def positive_int(name: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise ConfigError(f"{name}={value!r} must be a positive integer")
    return n


def integer(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not an integer") from None
