"""One registry per config group (issue 23, item 1): a variant is found from its config's
``_target_``, named after its module, typed by its own schema; and no code chooses a variant by
comparing its name or probing its config's keys (the scan below fails on the patterns removed)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import MISSING, OmegaConf

from acdc_exp.errors import ConfigError
from acdc_exp.registries import GROUPS, LOGGERS, MODELS, QUANTIZATION, SPARSITY, VariantConfig
from acdc_exp.registry import Registry, target_of, variant_name

PACKAGE = Path(__file__).resolve().parents[2] / "acdc_exp"
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_every_option_of_a_registry_group_chooses_a_registered_variant():
    for group, registry in GROUPS.items():
        for yaml in sorted((CONFIGS / group).glob("*.yaml")):
            node = OmegaConf.load(yaml)
            target = node.get("_target_") or OmegaConf.load(CONFIGS / group / f"{node.defaults[0]}.yaml")._target_
            variant = registry.variant({"_target_": target})
            assert variant.target == target and variant.group == group, yaml
            assert target in registry.registered(), f"{yaml}: {target} is not registered"  # models too: built-ins have schemas


def test_names_are_derived_from_the_module():
    assert variant_name("acdc_exp.sparsity.methods.acdc.Acdc") == "acdc"
    assert SPARSITY.name_of({"_target_": "acdc_exp.sparsity.methods.gmp.Gmp"}) == "gmp"
    assert QUANTIZATION.name_of({"_target_": "acdc_exp.quantization.none.NoQat"}) == "none"
    assert LOGGERS.name_of({"_target_": "acdc_exp.loggers.console.console"}) == "console"
    # a re-export is the variant where it is defined: the same schema, name and traits
    assert SPARSITY.variant({"_target_": "acdc_exp.recipe.convert.Acdc"}).target == "acdc_exp.sparsity.methods.acdc.Acdc"


@dataclass
class _Knobs(VariantConfig):
    depth: int = MISSING


def test_a_registry_types_builds_and_refuses_in_one_line():
    reg = Registry("widget", VariantConfig, handle="tests.WIDGETS")

    @reg.register(schema=_Knobs, shiny=True)
    def build(cfg, *, scale):
        return cfg.depth * scale

    node = {"_target_": target_of(build), "depth": "3"}
    assert reg.build(node, scale=2) == 6  # typed: "3" -> 3
    assert reg.variant(node).trait("shiny") is True and reg.variant(node).name == "test_registry"
    cases = {
        "Key 'deep' not in '_Knobs' (full_key: widget.deep)": {"_target_": target_of(build), "deep": 3},
        "Value 'x' of type 'str' could not be converted to Integer (full_key: widget.depth)": {**node, "depth": "x"},
        "widget._target_=nowhere.build cannot be imported": {"_target_": "nowhere.build"},
        "widget._target_=os.path.join is not a registered widget variant; allowed: a class or function decorated "
        "with tests.WIDGETS.register": {"_target_": "os.path.join"},
        "widget has no _target_": {"depth": 3},
    }
    for fragment, bad in cases.items():
        with pytest.raises(ConfigError) as err:
            reg.build(bad, scale=1)
        assert fragment in str(err.value) and "\n" not in str(err.value)


def test_a_model_needs_no_registration():
    """A model the usual Hydra way: an unregistered _target_ is a model with the base schema."""
    variant = MODELS.variant({"_target_": "torch.nn.Identity"})
    assert variant.schema is MODELS.base and variant.name == "linear"  # torch.nn.modules.linear.Identity
    typed = MODELS.typed({"_target_": "torch.nn.Identity", "num_classes": 3, "extra": 1})
    assert (typed.pretrained, typed.weights, typed.extra) == (False, None, 1)


# --- no variant chosen by name, no config key probed --------------------------------------------

# the options of the registry groups, and the names their variants derive
VARIANT_NAMES = {p.stem for g in GROUPS for p in (CONFIGS / g).glob("*.yaml")} | {
    v.name for r in GROUPS.values() for v in r.registered().values()
}
# words that are variant names and also other things: a sparsity phase (dense), a choice's
# "none", the key every lr schedule has (segments)
SHARED_WORDS = {"dense", "none", "segments"}
# attributes that used to choose a variant: sparsity.method, logger.kind, quantization.enabled,
# and the loader (data/loaders.py: asked for what it can do)
SELECTORS = {"method", "kind", "enabled", "loader"}


def _dotted(node: ast.AST) -> str:
    return ast.unparse(node)


_GROUP_NODE = re.compile(r"cfg\.(sparsity|logger|quantization)$")


def _config_chain(node: ast.AST) -> bool:
    """``cfg.sparsity``, ``s`` ... : a plain attribute chain through a config (no call in it)."""
    return re.fullmatch(r"[\w.]*cfg[\w.]*", _dotted(node)) is not None


def _findings(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            names = {s.value for s in sides if isinstance(s, ast.Constant) and isinstance(s.value, str)}
            seqs = [s for s in sides if isinstance(s, (ast.Tuple, ast.List, ast.Set))]
            names |= {e.value for s in seqs for e in s.elts if isinstance(e, ast.Constant)}
            if names & (VARIANT_NAMES - SHARED_WORDS):
                out.append(f"compares with a variant name: {_dotted(node)}")
            selector = [s for s in sides if isinstance(s, ast.Attribute) and s.attr in SELECTORS and _config_chain(s.value)]
            if selector:
                out.append(f"compares a config's variant selector: {_dotted(node)}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
            probe = node.func.id == "hasattr" or (node.func.id == "getattr" and len(node.args) == 3)
            if probe and re.search(r"cfg|config|\bs\b|\bq\b", _dotted(node.args[0])):
                out.append(f"probes a config's keys: {_dotted(node)}")
        if isinstance(node, ast.Attribute) and node.attr in SELECTORS and _GROUP_NODE.search(_dotted(node.value)):
            out.append(f"reads a removed selector: {_dotted(node)}")
    return out


def test_no_variant_name_compare_or_config_key_probe_in_the_package():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += [f"{path.relative_to(PACKAGE)}: {f}" for f in _findings(ast.parse(path.read_text()))]
    assert found == []


@pytest.mark.parametrize(
    "source",
    [
        'if cfg.sparsity.method == "acdc": pass',
        'enabled = cfg.method != "dense"',
        'x = s.kind in ("console", "wandb")',
        'if name == "resnet_small": pass',
        "knobs = {k: getattr(cfg, k) for k in KNOBS if hasattr(cfg, k)}",
        'warm = getattr(cfg.sparsity, "dense_phase_warmup_epochs", 0.0)',
        "if q.enabled and not hasattr(q, 'num_bits'): pass",
        "on = cfg.quantization.enabled",
        'if cfg.loader == "ffcv": pass',
        'if builtin == "digits": pass',
        'if cfg.name in ("digits", "fashion_mnist"): pass',
        'if self.func == "constant": pass',
    ],
)
def test_the_scan_catches_each_removed_pattern(source):
    assert _findings(ast.parse(source)), source


def test_a_run_saved_before_data_variants_finds_its_dataset():
    """acdc-eval on a run whose saved data config has no _target_ (written before 2026-12-08):
    the option its name names, with the saved values that variant still has."""
    from acdc_exp.runs.evaluate import _with_variant

    old_digits = {"name": "digits", "loader": "ffcv", "train_path": None, "val_path": None, "res": 32}
    assert _with_variant(old_digits) == {
        "_target_": "acdc_exp.data.datasets.digits.Digits",
        "name": "digits",
        "loader": "ffcv",
        "res": 32,
        "eval_split": "val",
        "crop_padding": 0,
    }
    old_fashion = {"name": "fashion_mnist", "source_dir": "/idx", "train_path": None, "holdout": 5000}
    assert _with_variant(old_fashion)["_target_"].endswith("fashion_mnist.FashionMnist")
    assert _with_variant(old_fashion)["source_dir"] == "/idx" and "train_path" not in _with_variant(old_fashion)
    given = {"name": "synthetic", "train_path": "/t.beton", "val_path": "/v.beton"}
    filled = {"eval_split": "val", "crop_padding": 0}  # keys added since, with what runs had before them
    assert _with_variant(given) == {"_target_": "acdc_exp.data.datasets.files.Files", **given, **filled}
    # digits given as files of its own: still those files, not the generated digits
    own = {"name": "digits", "train_path": "/t.beton", "val_path": "/v.beton"}
    assert _with_variant(own) == {"_target_": "acdc_exp.data.datasets.files.Files", **own, **filled}
