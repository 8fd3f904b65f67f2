"""``acdc-recipe``: SparseML recipes as acdc-exp experiments.

acdc-recipe convert RECIPE [--args JSON] [--model resnet50] [--data imagenet_ffcv] [--name NAME]
    print a Hydra experiment file; ``> configs/experiment/NAME.yaml`` saves it
acdc-recipe show RECIPE [--args JSON]
    print the recipe's variables, resolved (after --args)
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from typing import List, Optional

import yaml

from acdc_exp.cli.common import die
from acdc_exp.config.schema import recipe_stem
from acdc_exp.errors import AcdcError

PROG = "acdc-recipe"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Convert or inspect SparseML recipes.")
    sub = p.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="print a Hydra experiment config equivalent to the recipe")
    conv.add_argument("recipe", help="recipe .yaml, or a Markdown model card with a ```yaml fence")
    conv.add_argument("--args", default=None, help="recipe variable overrides, JSON: '{\"num_epochs\": 150}'")
    conv.add_argument("--model", default="resnet50", help="model config group choice (default: resnet50)")
    conv.add_argument("--data", default="imagenet_ffcv", help="data config group choice (default: imagenet_ffcv)")
    conv.add_argument("--name", default=None, help="experiment_name (default: the recipe file's stem)")
    show = sub.add_parser("show", help="print the recipe's resolved variables")
    show.add_argument("recipe")
    show.add_argument("--args", default=None, help="recipe variable overrides, JSON")
    return p


def _convert(ns: argparse.Namespace) -> str:
    from acdc_exp.recipe import experiment_yaml, load_recipe  # lazy: --help and bad arguments answer before torch loads
    from acdc_exp.recipe.convert import recipe_sections
    from acdc_exp.recipe.variables import parse_recipe_args

    # the name a recipe= run of the same file takes (its run dir and W&B run)
    name = ns.name or recipe_stem(ns.recipe, "recipe")
    if not _NAME_RE.match(name):
        raise _UsageError(f"--name {name!r} is not a valid experiment name; allowed: letters, digits, _ . -")
    for flag, value in (("--model", ns.model), ("--data", ns.data)):
        if not _NAME_RE.match(value):
            raise _UsageError(f"{flag} {value!r} is not a config group choice; allowed: letters, digits, _ . -")
    args = parse_recipe_args(ns.args)
    recipe = load_recipe(ns.recipe, args)
    return experiment_yaml(
        recipe_sections(recipe),  # with a model card's --pretrained
        name=name,
        model=ns.model,
        data=ns.data,
        source=ns.recipe,
        recipe_args=args,
        variables=recipe.variables,
    )


def _show(ns: argparse.Namespace) -> str:
    from acdc_exp.recipe import load_recipe  # lazy: --help and bad arguments answer before torch loads

    recipe = load_recipe(ns.recipe, ns.args)
    return yaml.safe_dump(recipe.variables, sort_keys=False, default_flow_style=False)


class _UsageError(Exception):
    pass


def main(argv: Optional[List[str]] = None) -> None:
    ns = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            text = _convert(ns) if ns.command == "convert" else _show(ns)
    except (AcdcError, _UsageError) as exc:
        die(PROG, str(exc))
    for w in caught:  # e.g. duplicate params: worth seeing, but not part of the YAML on stdout
        print(f"{PROG}: warning: {w.message}", file=sys.stderr)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
