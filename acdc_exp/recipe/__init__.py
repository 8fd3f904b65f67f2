"""SparseML recipe import: read a recipe (YAML or Markdown model card), resolve its variables
with a safe arithmetic evaluator, and translate its modifiers into acdc-exp config sections.

* ``recipe_to_config(path, recipe_args)`` -> dict of config sections the recipe determines;
* ``apply_recipe(cfg, cli_overrides)`` -> the composed config with the recipe merged in;
* ``experiment_yaml(...)`` -> a Hydra experiment file equivalent to a recipe.
"""

from acdc_exp.recipe.apply import apply_recipe
from acdc_exp.recipe.convert import Recipe, load_recipe, recipe_to_config
from acdc_exp.recipe.experiment import experiment_yaml
from acdc_exp.recipe.loader import load_recipe_text, parse_recipe
from acdc_exp.recipe.safe_eval import evaluate
from acdc_exp.recipe.variables import parse_recipe_args, resolve_variables

__all__ = [
    "apply_recipe",
    "recipe_to_config",
    "load_recipe",
    "Recipe",
    "experiment_yaml",
    "load_recipe_text",
    "parse_recipe",
    "evaluate",
    "parse_recipe_args",
    "resolve_variables",
]
