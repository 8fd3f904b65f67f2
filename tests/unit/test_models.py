"""Model builders: torchvision ResNets with local pretrained weights, the small ResNet, errors."""

from __future__ import annotations

import pytest
import torch

from acdc_exp.errors import CheckpointError, ConfigError
from acdc_exp.models import build_model
from acdc_exp.models.factory import load_pretrained, model_from_config, random_weights_note
from acdc_exp.models.small_resnet import small_resnet
from acdc_exp.models.torchvision_resnet import quantizable_resnet
from acdc_exp.registry import target_of

TORCHVISION = target_of(quantizable_resnet)


@pytest.mark.parametrize("name, convs", [("resnet18", 20), ("resnet34", 36), ("resnet50", 53)])
def test_torchvision_resnets_keep_torchvision_names(name, convs):
    import torchvision

    ours = build_model(name, num_classes=1000)
    ref = getattr(torchvision.models, name)(weights=None)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert sum(1 for _, p in ours.named_parameters() if p.ndim == 4) == convs


def _resnet(name: str, num_classes: int = 1000, **start) -> dict:
    """A model config as configs/model/<name>.yaml composes it, with where weights start."""
    return {"_target_": TORCHVISION, "name": name, "num_classes": num_classes, "zero_init_residual": False, **start}


def test_pretrained_from_local_file_loads_exactly(tmp_path):
    src = build_model("resnet18", num_classes=1000)
    path = tmp_path / "r18.pt"
    torch.save(src.state_dict(), path)
    model = model_from_config(_resnet("resnet18", pretrained=True, weights=str(path)))
    for (n, a), b in zip(src.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), n
    # a reload builds the same model and never reads the start weights (they may be gone)
    path.unlink()
    again = model_from_config(_resnet("resnet18", pretrained=True, weights=str(path)), start_weights=False)
    assert [n for n, _ in again.named_parameters()] == [n for n, _ in model.named_parameters()]


def test_pretrained_with_new_class_count_keeps_fresh_classifier(tmp_path):
    src = build_model("resnet18", num_classes=1000)
    path = tmp_path / "r18.pt"
    torch.save({"model": src.state_dict()}, path)  # an acdc-exp checkpoint layout
    model = model_from_config(_resnet("resnet18", num_classes=10, pretrained=True, weights=str(path)))
    assert model.fc.out_features == 10
    assert torch.equal(model.conv1.weight, src.conv1.weight)


def test_weights_enum_not_cached_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache: nothing is downloaded
    with pytest.raises(ConfigError, match="not in the torch cache"):
        load_pretrained(build_model("resnet50"), "ResNet50_Weights.IMAGENET1K_V1")
    with pytest.raises(ConfigError, match="allowed: a file path, or <Enum>.<entry> such as ResNet50_Weights.IMAGENET1K_V1"):
        load_pretrained(build_model("resnet50"), "IMAGENET9K")


def test_bad_model_inputs():
    with pytest.raises(ConfigError, match="model.name='vgg'"):
        build_model("vgg")
    with pytest.raises(ConfigError, match="6n\\+2"):
        build_model("resnet_small", depth=9)
    with pytest.raises(ConfigError, match="needs model.weights"):
        model_from_config(_resnet("resnet18", pretrained=True))
    with pytest.raises(ConfigError, match="model.name='resnet19' is not a torchvision ResNet here"):
        model_from_config(_resnet("resnet19"))
    with pytest.raises(ConfigError, match="model._target_=torch.nn.Linear failed to build"):
        model_from_config({"_target_": "torch.nn.Linear", "num_classes": 3})  # Linear takes no num_classes


def test_corrupt_weights_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="bad.pt"):
        model_from_config(_resnet("resnet18", pretrained=True, weights=str(bad)))


@pytest.mark.parametrize("name, blocks", [("resnet_small", 3), ("resnet18", 8), ("resnet50", 16)])
def test_zero_init_residual_zeroes_every_blocks_last_bn(name, blocks):
    model = build_model(name, zero_init_residual=True)
    last = [getattr(m, "bn3", None) or m.bn2 for m in model.modules() if hasattr(m, "downsample")]
    assert len(last) == blocks and all(bool((bn.weight == 0).all()) for bn in last)
    assert bool((model.bn1.weight != 0).all())  # the stem is not a branch


def test_small_resnet_forward_and_float_classifier():
    model = build_model("resnet_small", num_classes=10, depth=14, width=8)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    # the DeQuantStub precedes the classifier so QAT can keep fc in float
    names = [n for n, _ in model.named_children()]
    assert names.index("dequant") < names.index("fc")


def test_random_weights_note_only_for_torchvision_resnets_from_scratch():
    note = random_weights_note(_resnet("resnet50", pretrained=False))
    assert note.startswith("[model] resnet50 starts from random weights (model.pretrained=false);")
    assert "\n" not in note and "model.pretrained=true" in note
    assert random_weights_note(_resnet("resnet18", pretrained=True, weights="x.pt")) is None
    small = {"_target_": target_of(small_resnet), "num_classes": 10, "pretrained": False}
    assert random_weights_note(small) is None  # no ImageNet weights to start from (its variant's trait)
