"""Recipe files -> config sections: loading, modifiers, name translation, errors."""

from __future__ import annotations

import textwrap
import time
import warnings
from pathlib import Path

import pytest

from acdc_exp.errors import ConfigError
from acdc_exp.recipe import load_recipe, load_recipe_text, recipe_to_config

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "recipes" / "resnet50_imagenet_pruned85_quant_acdc.yaml"
MODEL_CARD = REPO / "recipes" / "resnet50_imagenet_pruned85_quant_acdc.md"

# torchvision ResNet-50: 3/4/6/3 bottlenecks, 3 convs each, plus downsample.0 in block 0
RESNET50_LAYER_CONVS = {
    f"layer{i + 1}.{b}.conv{k}.weight" for i, n in enumerate((3, 4, 6, 3)) for b in range(n) for k in (1, 2, 3)
} | {f"layer{i}.0.downsample.0.weight" for i in range(1, 5)}


def _convert(path=FIXTURE, args=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return recipe_to_config(path, args)


def _write(tmp_path: Path, body: str, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return p


MINIMAL = """
num_epochs: 10
modifiers:
  - !EpochRangeModifier
    start_epoch: 0
    end_epoch: eval(num_epochs)
  - !LearningRateFunctionModifier
    start_epoch: 0
    end_epoch: -1
    lr_func: cosine
    init_lr: 1e-1
    final_lr: 0.0
{extra}
"""


def test_fixture_config_values():
    with pytest.warns(UserWarning, match=r"lists 13 name\(s\) more than once; using each once \(52 unique\)"):
        cfg = recipe_to_config(FIXTURE)
    assert cfg["trainer"] == {"epochs": 206, "bn_recalibration_batches": 0}
    assert cfg["lr_schedule"]["name"] == "recipe"
    assert cfg["lr_schedule"]["segments"] == [
        {"func": "linear", "start_epoch": 0.0, "end_epoch": 5.0, "init_lr": 0.0512, "final_lr": 0.256},
        {"func": "cosine", "start_epoch": 5.0, "end_epoch": 200.0, "init_lr": 0.256, "final_lr": 0.0},
        {"func": "constant", "start_epoch": 200.0, "end_epoch": None, "init_lr": 5e-05, "final_lr": 5e-05},
        {"func": "cosine", "start_epoch": 202.0, "end_epoch": 206.0, "init_lr": 5e-05, "final_lr": 0.0},
    ]
    assert cfg["lr_schedule"]["weight_decay"] == [{"start_epoch": 0.0, "weight_decay": 1e-05}]
    assert cfg["optimizer"] == {"weight_decay": 1e-05}
    sp = cfg["sparsity"]
    params = sp.pop("params")
    assert sp == {
        "_target_": "acdc_exp.sparsity.methods.acdc.Acdc",
        "sparsity": 0.85,
        "mask_type": "block4",
        "global_sparsity": False,
        "start_epoch": 5.0,
        "end_epoch": 190.0,
        "update_frequency": 5.0,
        "phases": None,
        "reset_momentum": "all",
        "dense_phase_warmup_epochs": 0.0,
        "dead_channels": "regrow",
        "min_kept_per_channel": 0,
    }
    assert len(params) == 52 and set(params) == RESNET50_LAYER_CONVS
    assert params[:3] == ["layer1.0.conv1.weight", "layer1.0.conv3.weight", "layer1.0.downsample.0.weight"]
    assert cfg["quantization"] == {
        "_target_": "acdc_exp.quantization.qat.Qat",
        "start_epoch": 200.0,
        "submodules": ["input", "sections"],
        "disable_observer_epoch": 201.0,
        "freeze_bn_stats_epoch": 202.0,
        "reduce_range": False,  # SparseML's default, written out so the config's own default cannot leak in
    }


def test_model_card_markdown_equals_yaml():
    assert "num_epochs: 206" in load_recipe_text(MODEL_CARD)
    assert "```" not in load_recipe_text(MODEL_CARD)
    card = _convert(MODEL_CARD)
    # the card's training command (--pretrained True) is part of the run; the bare YAML has none
    assert card.pop("model") == {"pretrained": True} and "model" not in _convert(FIXTURE)
    assert card == _convert(FIXTURE)


def test_loaded_recipe_gives_the_same_sections_with_the_cards_pretrained_flag(tmp_path):
    from acdc_exp.recipe.convert import recipe_sections

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        card = recipe_sections(load_recipe(MODEL_CARD))  # what acdc-recipe convert writes
    assert card == _convert(MODEL_CARD) and card["model"] == {"pretrained": True}
    body = MODEL_CARD.read_text().replace("--pretrained True", "--pretrained maybe")
    with pytest.raises(ConfigError, match="--pretrained 'maybe' in its training command; allowed: True, False"):
        _convert(_write(tmp_path, body, "card.md"))


def test_markdown_without_yaml_fence(tmp_path):
    p = _write(tmp_path, "# A card\n\n```bash\nsparseml.train --recipe x\n```\n", "card.md")
    with pytest.raises(ConfigError, match=r"no ```yaml code fence with modifiers \(0 yaml fence\(s\) found\)"):
        load_recipe_text(p)
    p = _write(tmp_path, "# A card\n\n```yaml\nnum_epochs: 3\n```\n", "card2.md")
    with pytest.raises(ConfigError, match=r"\(1 yaml fence\(s\) found\)"):
        recipe_to_config(p)
    with pytest.raises(ConfigError, match="is not a file"):
        recipe_to_config(tmp_path / "missing.yaml")


def test_num_epochs_150(tmp_path):
    cfg = _convert(FIXTURE, '{"num_epochs": 150}')
    assert cfg["trainer"]["epochs"] == 150
    segs = cfg["lr_schedule"]["segments"]
    assert [(s["func"], s["start_epoch"], s["end_epoch"]) for s in segs] == [
        ("linear", 0.0, 5.0),
        ("cosine", 5.0, 144.0),
        ("constant", 144.0, None),
        ("cosine", 146.0, 150.0),
    ]
    assert (cfg["sparsity"]["start_epoch"], cfg["sparsity"]["end_epoch"]) == (5.0, 138.0)
    q = cfg["quantization"]
    assert (q["start_epoch"], q["disable_observer_epoch"], q["freeze_bn_stats_epoch"]) == (144.0, 145.0, 146.0)
    with pytest.raises(ConfigError, match="recipe_args sets epochs, not defined by the recipe; defined: num_epochs"):
        recipe_to_config(FIXTURE, {"epochs": 150})


def test_unsupported_modifier_is_named(tmp_path):
    extra = "  - !ConstantPruningModifier\n    params: __ALL_PRUNABLE__\n    start_epoch: 0"
    p = _write(tmp_path, MINIMAL.format(extra=extra))
    with pytest.raises(ConfigError) as err:
        recipe_to_config(p)
    msg = str(err.value)
    assert "!ConstantPruningModifier (under modifiers) is not supported" in msg
    assert "allowed: EpochRangeModifier, LearningRateFunctionModifier, SetLearningRateModifier" in msg


def test_unknown_field_is_an_error_but_logging_fields_are_not(tmp_path):
    p = _write(tmp_path, MINIMAL.format(extra="    cycle_epochs: 2"))
    with pytest.raises(ConfigError, match="!LearningRateFunctionModifier field\\(s\\) cycle_epochs are not supported"):
        recipe_to_config(p)
    p = _write(tmp_path, MINIMAL.format(extra="    log_types: __ALL__\n    constant_logging: false"))
    cfg = recipe_to_config(p)
    # end_epoch -1 is SparseML's "until the end of training"; 1e-1 without a dot is a float
    assert cfg["lr_schedule"]["segments"] == [
        {"func": "cosine", "start_epoch": 0.0, "end_epoch": 10.0, "init_lr": 0.1, "final_lr": 0.0}
    ]
    # no pruning / quantization modifiers: dense, no QAT, and the optimizer's own weight decay
    assert cfg["sparsity"] == {"_target_": "acdc_exp.sparsity.methods.dense.Dense"} and cfg["quantization"] == {
        "_target_": "acdc_exp.quantization.none.NoQat"
    }
    assert "optimizer" not in cfg and cfg["lr_schedule"]["weight_decay"] == []


def test_missing_required_field_and_bad_values(tmp_path):
    p = _write(tmp_path, MINIMAL.format(extra="  - !SetWeightDecayModifier\n    start_epoch: 0"))
    with pytest.raises(ConfigError, match="!SetWeightDecayModifier lacks required field\\(s\\): weight_decay"):
        recipe_to_config(p)
    p = _write(tmp_path, MINIMAL.format(extra="  - !SetLearningRateModifier\n    learning_rate: fast"))
    with pytest.raises(ConfigError, match="SetLearningRateModifier.learning_rate='fast' is not a number"):
        recipe_to_config(p)
    body = MINIMAL.format(extra="").replace("lr_func: cosine", "lr_func: cyclic_linear")
    with pytest.raises(ConfigError, match="lr_func='cyclic_linear' is not supported; allowed: linear, cosine"):
        recipe_to_config(_write(tmp_path, body))
    body = MINIMAL.format(extra="").replace("end_epoch: eval(num_epochs)", "end_epoch: eval(num_epochs / 4)")
    with pytest.raises(ConfigError, match="end_epoch=2.5 is not a positive whole number"):
        recipe_to_config(_write(tmp_path, body))


GMP = """
  - !GMPruningModifier
    init_sparsity: 0.05
    final_sparsity: eval(target)
    start_epoch: 1
    end_epoch: 8
    update_frequency: 0.5
    params: ["re:sections.*conv.*", input.conv.weight, classifier.fc.weight]
    mask_type: [1, 4]
    leave_enabled: true
"""


def test_gmp_recipe(tmp_path):
    p = _write(tmp_path, "target: 0.8\n" + MINIMAL.format(extra=GMP))
    sp = recipe_to_config(p)["sparsity"]
    assert sp == {
        "_target_": "acdc_exp.sparsity.methods.gmp.Gmp",
        "sparsity": 0.8,
        "init_sparsity": 0.05,
        "mask_type": "block4",
        "global_sparsity": False,
        "params": ["re:sections.*conv.*", "conv1.weight", "fc.weight"],
        "start_epoch": 1.0,
        "end_epoch": 8.0,
        "update_frequency": 0.5,
        "phases": None,
    }
    bad = GMP.replace("leave_enabled: true", "inter_func: linear")
    with pytest.raises(ConfigError, match="inter_func='linear' is not supported; allowed: cubic"):
        recipe_to_config(_write(tmp_path, "target: 0.8\n" + MINIMAL.format(extra=bad)))
    with pytest.raises(ConfigError, match="final_sparsity=1.5 is out of range"):
        recipe_to_config(_write(tmp_path, "target: 1.5\n" + MINIMAL.format(extra=GMP)))
    bad = GMP.replace("mask_type: [1, 4]", "mask_type: filter")
    with pytest.raises(ConfigError, match="mask_type='filter' is unknown; allowed: unstructured, block4"):
        recipe_to_config(_write(tmp_path, "target: 0.8\n" + MINIMAL.format(extra=bad)))
    two = MINIMAL.format(extra=GMP + GMP.replace("GMPruningModifier", "MagnitudePruningModifier"))
    with pytest.raises(ConfigError, match="recipe has 2 pruning modifiers .*; allowed: at most one"):
        recipe_to_config(_write(tmp_path, "target: 0.8\n" + two))


def test_structural_errors(tmp_path):
    with pytest.raises(ConfigError, match="has no !EpochRangeModifier"):
        recipe_to_config(_write(tmp_path, "modifiers:\n  - !SetLearningRateModifier\n    learning_rate: 0.1\n"))
    with pytest.raises(ConfigError, match="has no modifiers"):
        recipe_to_config(_write(tmp_path, "num_epochs: 3\n"))
    with pytest.raises(ConfigError, match=r"modifiers\[0\] has no !Modifier tag"):
        recipe_to_config(_write(tmp_path, "modifiers:\n  - end_epoch: 3\n"))
    with pytest.raises(ConfigError, match="is not valid YAML"):
        recipe_to_config(_write(tmp_path, "modifiers: [\n"))
    # Python-object tags that yaml's full loaders would construct stay inert records here
    body = "x: !!python/object/apply:os.system ['echo hi']\nmodifiers: []\n"
    with pytest.raises(ConfigError, match="is not valid YAML"):
        recipe_to_config(_write(tmp_path, body))


def test_load_recipe_exposes_variables_and_modifiers():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = load_recipe(FIXTURE, {"num_epochs": 100})
    assert r.variables["quantization_start_epoch"] == 94
    assert r.metadata == {"version": "1.1.0"}
    assert [m.type for m in r.modifiers] == [
        "EpochRangeModifier",
        "LearningRateFunctionModifier",
        "LearningRateFunctionModifier",
        "SetWeightDecayModifier",
        "ACDCPruningModifier",
        "SetLearningRateModifier",
        "LearningRateFunctionModifier",
        "QuantizationModifier",
    ]


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    # anchors nest 5 references deep per level: 3 * 5**11 (146 million) names if expanded
    levels = ["&x0 [layer1.0.conv1.weight, layer1.0.conv2.weight, layer1.0.conv3.weight]"]
    levels += [f"&x{i} [" + ", ".join([f"*x{i - 1}"] * 5) + "]" for i in range(1, 12)]
    mod = (
        "  - !ACDCPruningModifier\n    compression_sparsity: 0.9\n    start_epoch: 0\n    end_epoch: 4\n"
        f"    update_frequency: 1\n    params: [{', '.join(levels)}]"
    )
    path = _write(tmp_path, MINIMAL.format(extra=mod))
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="holds more than 100000 values"):
        recipe_to_config(path)
    assert time.perf_counter() - start < 2.0
