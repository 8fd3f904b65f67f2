"""Recipe variables: overrides (SparseML's ``--recipe_args``) and ``eval(...)`` resolution.

Overrides replace the *written* value of a variable before anything is computed, so every
variable derived from it is re-derived: ``num_epochs=150`` moves the quantization start, the
pruning end and so on, exactly as SparseML does.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Union

import yaml
from omegaconf import DictConfig, OmegaConf

from acdc_exp.errors import ConfigError
from acdc_exp.recipe.safe_eval import evaluate, expression_body, is_expression, parse_expression, referenced_names

RecipeArgs = Union[None, str, Mapping[str, Any], DictConfig]
# resolution recurses along dependency chains; real recipes have a few dozen variables
MAX_VARIABLES = 500


def parse_recipe_args(args: RecipeArgs) -> Dict[str, Any]:
    """``{"num_epochs": 150}`` from a dict, a DictConfig, or a JSON/YAML string."""
    if args is None or args == "":
        return {}
    if isinstance(args, DictConfig):
        args = OmegaConf.to_container(args, resolve=True)
    if isinstance(args, str):
        try:
            parsed = json.loads(args)
        except json.JSONDecodeError:
            try:
                parsed = yaml.safe_load(args)
            except yaml.YAMLError:
                raise ConfigError(
                    f"recipe_args {args!r} is not valid JSON or YAML; allowed: a mapping like '{{\"num_epochs\": 150}}'"
                ) from None
        args = parsed
    if not isinstance(args, Mapping):
        raise ConfigError(f"recipe_args {args!r} is not a mapping; allowed: a mapping like '{{\"num_epochs\": 150}}'")
    out: Dict[str, Any] = {}
    for key, value in args.items():
        if isinstance(value, (dict, list, tuple)) or (value is not None and not isinstance(value, (int, float, str, bool))):
            raise ConfigError(f"recipe_args {key}={value!r} is not a scalar; allowed: numbers, strings, booleans")
        out[str(key)] = value
    return out


def apply_overrides(variables: Mapping[str, Any], overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """The written variables with ``overrides`` substituted; unknown names are an error."""
    unknown = [k for k in overrides if k not in variables]
    if unknown:
        defined = ", ".join(variables) or "(none)"
        raise ConfigError(f"recipe_args sets {', '.join(unknown)}, not defined by the recipe; defined: {defined}")
    merged = dict(variables)
    merged.update(overrides)
    return merged


def resolve_variables(variables: Mapping[str, Any], overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Every variable's value, ``eval(...)`` ones computed in dependency order (any order in
    the file); a cycle or a reference to an undefined name is a ConfigError."""
    written = apply_overrides(variables, overrides or {})
    if len(written) > MAX_VARIABLES:
        raise ConfigError(f"recipe defines {len(written)} variables; allowed: at most {MAX_VARIABLES}")
    deps: Dict[str, List[str]] = {}
    for name, value in written.items():
        if is_expression(value):
            tree = parse_expression(expression_body(value))
            missing = sorted(referenced_names(tree) - set(written))
            if missing:
                raise ConfigError(
                    f"recipe variable {name}: {value!r} uses {', '.join(missing)}, not defined by the recipe; "
                    f"defined: {', '.join(written)}"
                )
            deps[name] = sorted(referenced_names(tree))
        else:
            deps[name] = []

    resolved: Dict[str, Any] = {}
    state: Dict[str, str] = {}  # name -> "visiting" | "done"

    def visit(name: str, chain: List[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = chain[chain.index(name) :] + [name]
            raise ConfigError(f"recipe variables refer to each other in a cycle: {' -> '.join(cycle)}")
        state[name] = "visiting"
        for dep in deps[name]:
            visit(dep, chain + [name])
        value = written[name]
        resolved[name] = evaluate(expression_body(value), resolved) if is_expression(value) else value
        state[name] = "done"

    for name in written:
        visit(name, [])
    # keep the file's order for display
    return {name: resolved[name] for name in written}


# YAML aliases can make a small file describe a huge nested list (a "billion laughs"); a
# field is walked element by element, so the walk has a budget
MAX_FIELD_NODES = 100_000


def resolve_value(value: Any, env: Mapping[str, Any]) -> Any:
    """A modifier field with its ``eval(...)`` strings computed (lists element by element)."""
    budget = [MAX_FIELD_NODES]

    def walk(v: Any) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError(f"a recipe modifier field holds more than {MAX_FIELD_NODES} values; allowed: fewer")
        if is_expression(v):
            return evaluate(expression_body(v), env)
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v

    return walk(value)
