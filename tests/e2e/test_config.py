"""Every config option composes onto the typed schema; bad overrides are one-line errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import one_error_line, run_cli
from omegaconf import OmegaConf

from acdc_exp.config.compose import compose_config, config_dir, finalize
from acdc_exp.errors import ConfigError
from acdc_exp.registries import GROUPS as REGISTRIES
from acdc_exp.registries import MODELS, SPARSITY

CONFIGS = Path(config_dir())
GROUPS = ["model", "data", "optimizer", "lr_schedule", "sparsity", "quantization", "logger", "trainer", "paths"]


def _literal_values(tree, prefix: tuple = ()) -> dict:
    """{key path: value} for every leaf that is not an interpolation or a Hydra directive."""
    out: dict = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key != "defaults" and not str(key).startswith("_"):
                out.update(_literal_values(value, prefix + (key,)))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            out.update(_literal_values(value, prefix + (i,)))
    elif not (isinstance(tree, str) and "${" in tree):
        out[prefix] = tree
    return out


def _get(tree, path: tuple):
    for key in path:
        tree = tree[key]
    return tree


# options with a mandatory value (``???``) the user gives
NEEDS = {("lr_schedule", "segments"): ["lr_schedule.segments=[{func: constant, init_lr: 0.1}]"]}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes(group):
    opts = options(group)
    assert opts, f"configs/{group} is empty"
    for opt in opts:
        cfg = compose_config([f"{group}={opt}", *NEEDS.get((group, opt), [])])
        # resolve everything except the run dir, which only exists inside a Hydra run
        container = OmegaConf.to_container(cfg[group], resolve=group != "paths")
        # every literal value the option's YAML sets is what the composed config holds
        yaml = OmegaConf.to_container(OmegaConf.load(CONFIGS / group / f"{opt}.yaml"), resolve=False)
        assert set(yaml) - {"defaults"} <= set(container), (group, opt)
        for path, value in _literal_values(yaml).items():
            if value != "???":  # mandatory: NEEDS gives it
                assert _get(container, path) == value, (group, opt, path)
        finalize(cfg)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes(experiment):
    cfg = compose_config([f"experiment={experiment}"])
    finalize(cfg)
    # every literal the experiment file sets (global package) is what the run gets
    yaml = OmegaConf.to_container(OmegaConf.load(CONFIGS / "experiment" / f"{experiment}.yaml"), resolve=False)
    container = OmegaConf.to_container(cfg, resolve=False)
    assert cfg.experiment_name == yaml["experiment_name"]
    for path, value in _literal_values(yaml).items():
        assert _get(container, path) == value, (experiment, path)


def test_each_option_has_its_variant_schema():
    kinds = {
        ("sparsity", "acdc"): "AcdcConfig",
        ("sparsity", "acdc_paper"): "AcdcConfig",
        ("sparsity", "gmp"): "GmpConfig",
        ("sparsity", "dense"): "VariantConfig",  # only its _target_
        ("logger", "wandb"): "WandbLoggerConfig",
        ("logger", "console"): "LoggerConfig",
        ("quantization", "qat"): "QatConfig",
        ("quantization", "none"): "VariantConfig",
        ("model", "resnet_small"): "SmallResNetConfig",
        ("model", "resnet50"): "TorchvisionResNetConfig",
        ("lr_schedule", "warmup_cosine"): "PresetLRScheduleConfig",
        ("lr_schedule", "segments"): "LRScheduleConfig",
        ("data", "digits"): "BuiltInDataConfig",
        ("data", "fashion_mnist"): "FashionMnistDataConfig",
        ("data", "imagenet_ffcv"): "FilesDataConfig",
        ("data", "imagenet_folder"): "FilesDataConfig",
    }
    for (group, opt), name in kinds.items():
        assert OmegaConf.get_type(compose_config([f"{group}={opt}"])[group]).__name__ == name, (group, opt)
    # the reference experiment gives its segments whole: no preset knobs left over
    ref = compose_config(["experiment=resnet50_imagenet_acdc85_quant"]).lr_schedule
    assert sorted(ref) == ["_target_", "name", "segments", "weight_decay"]


def test_default_is_the_digits_acdc_demo():
    cfg = compose_config([])
    assert cfg.data.name == "digits"
    assert SPARSITY.name_of(cfg.sparsity) == "acdc" and MODELS.name_of(cfg.model) == "small_resnet"
    assert sorted(compose_config(["sparsity=dense"]).sparsity) == ["_target_"]  # no keys it does not have


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("optimizer.lrr=0.1", "lrr"),
        ("trainer.epochs=ten", "ten"),
        ("sparsity.sparsity=1.5", "sparsity.sparsity=1.5"),
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1"),
        ("sparsity.mask_type=block8", "block8"),
        ("sparsity._target_=magic.Method", "magic.Method"),
        ("logger._target_=acdc_exp.sparsity.methods.acdc.Acdc", "not a registered logger variant"),
        # a variant's schema types its config: a key it lacks, a value of the wrong type, its own rule
        ("+sparsity.init_sparsity=0.1", "sparsity (acdc): Key 'init_sparsity' not in 'AcdcConfig'"),
        ("sparsity.sparsity=most", "sparsity (acdc): Value 'most' of type 'str' could not be converted to Float"),
    ],
)
def test_bad_override_is_refused_in_process(override, fragment):
    with pytest.raises(Exception) as info:
        finalize(compose_config([override]))
    assert fragment in str(info.value)


def test_the_reference_experiment_composes_with_every_method():
    """Its masking settings are read by the pruning methods only (sparsity/masked/), so its
    dense baseline composes too; AC/DC and GMP share them value for value."""
    ref = "experiment=resnet50_imagenet_acdc85_quant"
    acdc, gmp, dense = (finalize(compose_config([ref, f"sparsity={m}"])).sparsity for m in ("acdc", "gmp", "dense"))
    assert sorted(dense) == ["_target_"]
    for key in ("sparsity", "mask_type", "global_sparsity", "params", "start_epoch", "end_epoch", "min_kept_per_channel"):
        assert acdc[key] == gmp[key], key
    assert (acdc.sparsity, acdc.mask_type, len(acdc.params), acdc.update_frequency) == (0.85, "block4", 52, 5.0)


def test_model_keys_are_overridable_without_plus():
    """Every key a model's builder or start takes is written in its YAML, so the command line sets it."""
    for model in ("resnet_small", "resnet50"):
        cfg = finalize(compose_config([f"model={model}", "model.zero_init_residual=true", "model.weights=/w.pt"]))
        assert cfg.model.zero_init_residual is True and cfg.model.weights == "/w.pt"


def test_a_variants_own_rule_is_checked_with_the_plan():
    with pytest.raises(ConfigError, match="quantization.num_bits=4 is not supported; allowed: 8"):
        finalize(compose_config(["quantization=qat", "quantization.num_bits=4"]))
    # GMP's own rule comes first: an N:M pattern's fixed sparsity is not what is wrong there
    with pytest.raises(ConfigError, match="a GMP ramp needs unstructured or block4"):
        finalize(compose_config(["sparsity=gmp", "sparsity.mask_type=2:4"]))


# a bad value is one line before anything runs: what acdc-train's precheck raises (check_run,
# the function the console script calls first), each case in-process
BEFORE_THE_RUN = [
    (["optimizer.lrr=0.1"], "lrr"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1"),
    (["lr_schedule.peak_lr=-1"], "negative"),
    # data= alone would train the digits demo's model and schedule on it
    (["data=imagenet_ffcv"], "name model= to train another model on it"),
    # per-variant schemas: a key of another variant of the group is an error
    (["sparsity.init_sparsity=0.1"], "Key 'init_sparsity' is not in struct"),
    (["sparsity=gmp", "sparsity.reset_momentum=none"], "Key 'reset_momentum' is not in struct"),
    (["logger.project=demo"], "Key 'project' is not in struct"),
    (["experiment=resnet50_imagenet_acdc85_quant", "lr_schedule.peak_lr=0.3"], "Key 'peak_lr' is not in struct"),
    (["quantization.start_epoch=3"], "Key 'start_epoch' is not in struct"),
    # RigL's own values, and an AC/DC key on it
    (["sparsity=rigl", "sparsity.distribution=erdos"], "sparsity.distribution='erdos' is not allowed; allowed: uniform, erk"),
    (["sparsity=rigl", "sparsity.grow=momentum"], "sparsity.grow='momentum' is not allowed; allowed: gradient, random"),
    (["sparsity=rigl", "sparsity.delta_t=0"], "sparsity.delta_t=0 is not allowed; allowed: an integer >= 1"),
    (["sparsity=rigl", "sparsity.end_fraction=1.5"], "sparsity.end_fraction=1.5 is out of range"),
    (["sparsity=rigl", "sparsity.sparsity=1.0"], "allowed: 0 <= sparsity < 1"),
    (["sparsity=rigl", "sparsity.update_frequency=2"], "Key 'update_frequency' is not in struct"),
]


@pytest.mark.parametrize("args, fragment", BEFORE_THE_RUN)
def test_bad_override_is_one_line_before_the_run(args, fragment, tmp_path):
    from acdc_exp.config.precheck import check_run, prepare_train_job

    with pytest.raises(ConfigError) as err:
        check_run([*args, f"paths.runs_root={tmp_path}", "logger=none"], "train", prepare_train_job)
    assert fragment in str(err.value) and "\n" not in str(err.value)


# through the console script: a composition error, a precheck's, and a bad path found once the
# run opens its data (after the precheck), each one line on stderr and a non-zero exit
@pytest.mark.parametrize(
    "args, fragment",
    [
        BEFORE_THE_RUN[0],
        BEFORE_THE_RUN[3],
        (["model=resnet18", "data=imagenet_ffcv", "data.train_path=/nonexistent/train.beton"], "/nonexistent/train.beton"),
    ],
)
def test_bad_override_cli_exits_nonzero_with_one_line(args, fragment, tmp_path):
    proc = run_cli("acdc-train", *args, f"paths.runs_root={tmp_path}", "logger=none", "trainer.progress=false")
    assert fragment in one_error_line(proc, "acdc-train")
    # no half-written checkpoint left behind
    assert not list(tmp_path.rglob("*.pt"))


# keys a variant's schema has that its options need not write: a label its variant names, and
# the .beton naming of the ffcv files (imagenet_folder reads a tree)
UNWRITTEN = {"name": "*", "beton_dir": "imagenet_folder", "max_resolution": "imagenet_folder"}
UNWRITTEN |= {"compress_probability": "imagenet_folder", "jpeg_quality": "imagenet_folder"}


def _written_keys(path: Path) -> set:
    """The keys an option's YAML writes, with those of the same group's options it extends."""
    node = OmegaConf.load(path)
    keys = set(node.keys()) - {"defaults"}
    for parent in node.get("defaults", []):
        if isinstance(parent, str) and parent != "_self_":
            keys |= _written_keys(path.parent / f"{parent}.yaml")
    return keys


@pytest.mark.parametrize("group", sorted(REGISTRIES))
def test_every_key_of_a_variant_is_written_in_its_options(group):
    """Groups compose untyped (the schema follows _target_), so a key only the schema has would
    need a + on the command line: each option writes every key of its variant."""
    for path in sorted((CONFIGS / group).glob("*.yaml")):
        keys = _written_keys(path)
        target = compose_config([f"{group}={path.stem}"])[group]._target_
        variant = REGISTRIES[group].variant({"_target_": target})
        unwritten = [f.name for f in dataclasses.fields(variant.schema) if f.name not in keys and f.name != "_target_"]
        assert [k for k in unwritten if UNWRITTEN.get(k) not in ("*", path.stem)] == [], path
