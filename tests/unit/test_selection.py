"""Parameter selection on torchvision's ResNet-50 with SparseML names, globs and errors."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

from acdc_exp.errors import ConfigError
from acdc_exp.sparsity.selection import select_parameters, to_sparseml_name, to_torchvision_name

torch.set_num_threads(1)

# The params list of the reference AC/DC ResNet-50 recipe: 65 entries, 13 of them repeated.
RECIPE_PARAMS = """
sections.0.0.conv1.weight sections.0.0.conv3.weight sections.0.0.identity.conv.weight
sections.0.1.conv3.weight sections.0.2.conv3.weight sections.1.0.conv3.weight
sections.0.0.conv2.weight sections.0.1.conv1.weight sections.0.2.conv1.weight
sections.1.0.conv1.weight sections.1.0.identity.conv.weight sections.1.1.conv3.weight
sections.1.2.conv3.weight sections.1.3.conv3.weight sections.2.0.conv3.weight
sections.0.1.conv2.weight sections.0.2.conv2.weight sections.1.0.conv2.weight
sections.1.1.conv1.weight sections.1.2.conv1.weight sections.1.3.conv1.weight
sections.2.0.conv1.weight sections.2.0.identity.conv.weight sections.2.1.conv3.weight
sections.2.2.conv3.weight sections.2.3.conv3.weight sections.2.4.conv3.weight
sections.2.5.conv3.weight sections.3.0.conv3.weight sections.3.1.conv3.weight
sections.3.2.conv3.weight sections.1.1.conv2.weight sections.1.2.conv2.weight
sections.1.3.conv2.weight sections.2.0.conv2.weight sections.2.1.conv1.weight
sections.2.2.conv1.weight sections.2.3.conv1.weight sections.2.4.conv1.weight
sections.2.5.conv1.weight sections.3.0.conv1.weight sections.3.0.identity.conv.weight
sections.3.1.conv1.weight sections.3.2.conv1.weight sections.1.1.conv2.weight
sections.1.2.conv2.weight sections.1.3.conv2.weight sections.2.0.conv2.weight
sections.2.1.conv1.weight sections.2.2.conv1.weight sections.2.3.conv1.weight
sections.2.4.conv1.weight sections.2.5.conv1.weight sections.3.0.conv1.weight
sections.3.0.identity.conv.weight sections.3.1.conv1.weight sections.3.2.conv1.weight
sections.2.1.conv2.weight sections.2.2.conv2.weight sections.2.3.conv2.weight
sections.2.4.conv2.weight sections.2.5.conv2.weight sections.3.0.conv2.weight
sections.3.1.conv2.weight sections.3.2.conv2.weight
""".split()


@pytest.fixture(scope="module")
def resnet50() -> nn.Module:
    return torchvision.models.resnet50(weights=None)


def _layer_convs(model: nn.Module) -> list:
    return [n for n, p in model.named_parameters() if n.startswith("layer") and p.ndim == 4]


def test_reference_recipe_selects_52_unique_convs_with_duplicate_warning(resnet50):
    assert len(RECIPE_PARAMS) == 65
    with pytest.warns(UserWarning, match=r"13 name\(s\) more than once") as record:
        selected = select_parameters(resnet50, RECIPE_PARAMS)
    names = [n for n, _ in selected]
    assert len(names) == 52 and len(set(names)) == 52
    # exactly the convs of layer1..layer4 (incl. the 4 downsample convs), in model order
    assert names == _layer_convs(resnet50)
    message = str(record[0].message)
    assert "sections.3.0.identity.conv.weight (= layer4.0.downsample.0.weight)" in message
    assert "sections.0.0.conv1.weight" not in message  # listed once
    # the parameters are the model's own objects
    params = dict(resnet50.named_parameters())
    assert all(p is params[n] for n, p in selected)


@pytest.mark.parametrize(
    "alias,name",
    [
        ("input.conv.weight", "conv1.weight"),
        ("sections.0.0.conv1.weight", "layer1.0.conv1.weight"),
        ("sections.3.2.conv3.weight", "layer4.2.conv3.weight"),
        ("sections.1.0.identity.conv.weight", "layer2.0.downsample.0.weight"),
        ("classifier.fc.weight", "fc.weight"),
        ("classifier.fc.bias", "fc.bias"),
        ("sections.2.4.bn2.weight", "layer3.4.bn2.weight"),
        ("layer1.0.conv1.weight", "layer1.0.conv1.weight"),  # torchvision names pass through
        ("input.convx.weight", "input.convx.weight"),  # only whole name segments translate
    ],
)
def test_alias_translation(alias, name):
    assert to_torchvision_name(alias) == name
    if alias != name:
        assert to_sparseml_name(name) == alias


def test_aliases_and_torchvision_names_select_the_same_params(resnet50):
    aliases = ["input.conv.weight", "sections.1.0.identity.conv.weight", "classifier.fc.weight"]
    tv = ["conv1.weight", "layer2.0.downsample.0.weight", "fc.weight"]
    assert [n for n, _ in select_parameters(resnet50, aliases)] == tv
    assert [n for n, _ in select_parameters(resnet50, list(reversed(tv)))] == tv  # model order


def test_same_param_under_both_names_warns(resnet50):
    with pytest.warns(UserWarning, match=r"input.conv.weight \(= conv1.weight\)"):
        selected = select_parameters(resnet50, ["conv1.weight", "input.conv.weight"])
    assert [n for n, _ in selected] == ["conv1.weight"]


def test_overlapping_globs_do_not_warn(resnet50):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        selected = select_parameters(
            resnet50, ["layer1.*conv*.weight", "layer1.0.conv*.weight", "layer1.0.conv1.weight", r"re:layer1\.0\.down.*0\.weight"]
        )
    names = [n for n, _ in selected]
    assert names[0] == "layer1.0.conv1.weight" and len(names) == len(set(names))
    # layer1 block 0 has 3 convs + a downsample conv; blocks 1 and 2 have 3 convs each; no bn
    assert len(names) == 10 and not any(".bn" in n or "downsample.1" in n for n in names)


def test_glob_patterns(resnet50):
    all_convs = select_parameters(resnet50, ["*conv*.weight"])
    # stem conv1 + 48 bottleneck convs; downsample.0 has no "conv" in its torchvision name and
    # torchvision-style globs do not match through the SparseML alias (identity.conv)
    assert len(all_convs) == 1 + 48
    assert [n for n, _ in select_parameters(resnet50, ["layer4.*.conv2.weight"])] == [
        "layer4.0.conv2.weight",
        "layer4.1.conv2.weight",
        "layer4.2.conv2.weight",
    ]
    # globs in SparseML names match through the alias
    sparseml = [n for n, _ in select_parameters(resnet50, ["sections.*.conv*.weight"])]
    assert sparseml == _layer_convs(resnet50)
    assert [n for n, _ in select_parameters(resnet50, ["re:sections\\.3\\..*identity\\.conv\\.weight"])] == [
        "layer4.0.downsample.0.weight"
    ]
    assert [n for n, _ in select_parameters(resnet50, ["re:layer[34]\\.0\\.downsample\\.0\\.weight"])] == [
        "layer3.0.downsample.0.weight",
        "layer4.0.downsample.0.weight",
    ]
    prunable = [n for n, _ in select_parameters(resnet50, ["__ALL_PRUNABLE__"])]
    assert len(prunable) == 54 and prunable[0] == "conv1.weight" and prunable[-1] == "fc.weight"


def test_unknown_name_lists_close_matches(resnet50):
    with pytest.raises(ConfigError) as err:
        select_parameters(resnet50, ["layer1.0.conv1.weight", "layer1.0.conv4.weight"])
    message = str(err.value)
    assert "\n" not in message
    assert "'layer1.0.conv4.weight' is not a parameter of the model" in message
    assert "closest: layer1.0.conv" in message
    with pytest.raises(ConfigError, match=r"'sections.0.0.conv7.weight' .* closest: layer1.0.conv"):
        select_parameters(resnet50, ["sections.0.0.conv7.weight"])
    with pytest.raises(ConfigError, match=r"'sections.9.0.conv1.weight'"):
        select_parameters(resnet50, ["sections.9.0.conv1.weight"])


def test_glob_matching_nothing_is_an_error(resnet50):
    with pytest.raises(ConfigError, match=r"'layer5\.\*\.weight' matches no parameter of the model; closest: "):
        select_parameters(resnet50, ["layer5.*.weight"])


def test_selecting_1d_params_is_an_error(resnet50):
    with pytest.raises(ConfigError, match=r"layer1.0.bn1.weight .*shape \(64,\).*ndim >= 2"):
        select_parameters(resnet50, ["layer1.0.bn1.weight"])
    with pytest.raises(ConfigError, match=r"fc.bias"):
        select_parameters(resnet50, ["classifier.fc.bias"])
    with pytest.raises(ConfigError, match=r"ndim < 2: bn1.weight .* and \d+ more"):
        select_parameters(resnet50, ["*"])


def test_bad_pattern_entries(resnet50):
    with pytest.raises(ConfigError, match="is empty"):
        select_parameters(resnet50, [])
    with pytest.raises(ConfigError, match="not a valid regex"):
        select_parameters(resnet50, ["re:(conv"])
    with pytest.raises(ConfigError, match="not a parameter name"):
        select_parameters(resnet50, [""])


def test_literal_name_wins_over_alias():
    # a model that uses SparseML's own naming keeps its literal names
    model = nn.Module()
    model.input = nn.Module()
    model.input.conv = nn.Conv2d(3, 4, 3)
    assert [n for n, _ in select_parameters(model, ["input.conv.weight"])] == ["input.conv.weight"]
