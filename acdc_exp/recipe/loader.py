"""Reading a SparseML recipe file: the YAML text, its variables and its ``!Tag`` modifiers.

A recipe is a YAML file, or a Markdown model card whose recipe sits in a ```yaml fence (the
form SparseZoo publishes). Modifiers are YAML tags (``- !ACDCPruningModifier``), parsed by a
SafeLoader subclass into plain ``RawModifier`` records; no SparseML code is needed or run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Union

import yaml

from acdc_exp.errors import ConfigError

# ```yaml ... ``` (also ```yml); the body is everything up to the closing fence
_FENCE_RE = re.compile(r"^[ \t]*```[ \t]*ya?ml[ \t]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL | re.IGNORECASE)
# metadata keys at the top level that are not variables
METADATA_KEYS = ("version",)
# real recipes are a few kB; a model card with prose maybe 100 kB
MAX_RECIPE_BYTES = 5_000_000


@dataclass
class RawModifier:
    """One ``!Tag`` mapping: fields are as written (``eval(...)`` strings unresolved)."""

    type: str
    fields: Dict[str, Any]
    group: str  # the top-level key it was listed under, e.g. pruning_modifiers


@dataclass
class RawRecipe:
    variables: Dict[str, Any] = field(default_factory=dict)
    modifiers: List[RawModifier] = field(default_factory=list)
    metadata: Dict[str, Any] = field(default_factory=dict)


@dataclass
class _Tagged:
    tag: str
    value: Any


class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader that keeps any ``!Tag`` node as a ``_Tagged`` record instead of failing."""


def _construct_tagged(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> _Tagged:
    if isinstance(node, yaml.MappingNode):
        value: Any = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return _Tagged(tag_suffix, value)


_RecipeLoader.add_multi_constructor("!", _construct_tagged)
# YAML 1.1 reads ``1e-5`` (no dot) as a string; recipes mean a float
_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def load_recipe_text(path: Union[str, Path]) -> str:
    """The recipe's YAML text: the file itself, or, for Markdown, the ```yaml fence that
    holds modifiers."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"recipe {str(path)!r} is not a file; allowed: a SparseML recipe .yaml or .md file")
    if p.stat().st_size > MAX_RECIPE_BYTES:
        raise ConfigError(f"recipe {str(path)!r} is {p.stat().st_size} bytes; allowed: at most {MAX_RECIPE_BYTES}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"recipe {str(path)!r} cannot be read ({err})") from None
    if p.suffix.lower() not in (".md", ".markdown"):
        return text
    fences = _FENCE_RE.findall(text)
    # a model card may also carry small YAML snippets; the recipe is the one with modifiers
    with_modifiers = [body for body in fences if re.search(r"^\s*\w*modifiers\s*:", body, re.MULTILINE)]
    if not with_modifiers:
        raise ConfigError(
            f"recipe {str(path)!r} has no ```yaml code fence with modifiers "
            f"({len(fences)} yaml fence(s) found); allowed: a Markdown file whose recipe is in a ```yaml fence"
        )
    if len(with_modifiers) > 1:
        raise ConfigError(
            f"recipe {str(path)!r} has {len(with_modifiers)} ```yaml fences with modifiers; allowed: exactly one "
            "(save the one you mean as a .yaml file)"
        )
    return with_modifiers[0]


_SHELL_FENCE_RE = re.compile(r"^[ \t]*```[ \t]*(?:bash|sh|shell)[ \t]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)


def card_training_flags(path: Union[str, Path]) -> Dict[str, str]:
    """``--flag value`` pairs of the training command a Markdown model card gives
    (``sparseml.image_classification.train ...`` without ``--eval-mode``); {} for a plain
    YAML recipe or a card without one. ``--pretrained True`` there is part of the run."""
    p = Path(path)
    if p.suffix.lower() not in (".md", ".markdown"):
        return {}
    for body in _SHELL_FENCE_RE.findall(p.read_text(encoding="utf-8")):
        if "image_classification.train" not in body or "--eval-mode" in body:
            continue
        words = shlex.split(body.replace("\\\n", " "))
        return {w[2:].replace("-", "_"): v for w, v in zip(words, words[1:] + [""]) if w.startswith("--")}
    return {}


def parse_recipe(text: str, source: str = "recipe") -> RawRecipe:
    """Split recipe YAML into variables (top-level scalars), metadata and modifiers."""
    try:
        doc = yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{source} is not valid YAML ({first})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{source} is not a YAML mapping of variables and modifier lists")
    recipe = RawRecipe()
    for key, value in doc.items():
        key = str(key)
        if key.endswith("modifiers"):
            recipe.modifiers.extend(_modifier_list(key, value, source))
        elif key in METADATA_KEYS:
            recipe.metadata[key] = value
        elif isinstance(value, (_Tagged, dict, list)):
            raise ConfigError(
                f"{source}: top-level key {key!r} holds a {type(value).__name__}; allowed: scalar variables "
                "and modifier lists under keys ending in 'modifiers'"
            )
        else:
            recipe.variables[key] = value
    if not recipe.modifiers:
        raise ConfigError(f"{source} has no modifiers; allowed: lists of !Modifier entries under keys ending in 'modifiers'")
    return recipe


def _modifier_list(key: str, value: Any, source: str) -> List[RawModifier]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{source}: {key} is a {type(value).__name__}; allowed: a list of !Modifier entries")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, _Tagged):
            raise ConfigError(f"{source}: {key}[{i}] has no !Modifier tag; allowed: entries like '- !EpochRangeModifier'")
        fields = item.value if item.value not in (None, "") else {}
        if not isinstance(fields, dict):
            raise ConfigError(f"{source}: {key}[{i}] !{item.tag} is not a mapping of fields")
        out.append(RawModifier(item.tag, {str(k): v for k, v in fields.items()}, key))
    return out
