"""Recipes through Hydra: ``recipe=`` vs the shipped experiment, the plan they produce,
command-line precedence, and ``acdc-recipe`` output composed as an experiment."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ValidationError

from acdc_exp.cli.recipe import main as recipe_main
from acdc_exp.config.schema import register_configs
from acdc_exp.config.variants import typed_groups
from acdc_exp.errors import ConfigError
from acdc_exp.plan import Plan
from acdc_exp.recipe import apply_recipe, recipe_to_config
from acdc_exp.registries import LOGGERS, MODELS, QUANTIZATION, LRSegmentConfig
from acdc_exp.sparsity.methods.acdc import AcdcConfig

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "configs"
FIXTURE = REPO / "recipes" / "resnet50_imagenet_pruned85_quant_acdc.yaml"
EXPERIMENT = "resnet50_imagenet_acdc85_quant"
MODEL_CARD = REPO / "recipes" / "resnet50_imagenet_pruned85_quant_acdc.md"
STEM = "resnet50_imagenet_pruned85_quant_acdc"
# a bare .yaml recipe has no --pretrained: on a torchvision ResNet the run must say it (the experiment does)
RECIPE_RUN = ["model=resnet50", "data=imagenet_ffcv", f"recipe={FIXTURE}", "model.pretrained=true"]
SPE = 4  # steps per epoch for plan traces


def _compose(overrides: List[str], extra_dir: Optional[Path] = None, hydra_cfg: bool = False) -> DictConfig:
    register_configs()
    GlobalHydra.instance().clear()
    if extra_dir is not None:
        overrides = [*overrides, f"hydra.searchpath=[file://{extra_dir}]"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        # typed by each registry group's variant, as every command does (config/variants.py)
        return typed_groups(compose(config_name="train", overrides=overrides, return_hydra_config=hydra_cfg))


def _with_recipe(overrides: List[str]) -> DictConfig:
    def compose_groups(options):  # as config.compose.finalize gives it
        return _compose([f"{group}={option}" for group, option in options.items()])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the recipe's duplicate params
        return typed_groups(apply_recipe(_compose(overrides), overrides, compose_groups))  # as finalize does


def _schedule(cfg: DictConfig, keys) -> dict:
    """The sections a recipe determines, as plain containers."""
    # section by section: paths.run_dir needs the hydra: resolver, unset outside an app
    c = {
        k: OmegaConf.to_container(cfg[k], resolve=True)
        for k in ("trainer", "lr_schedule", "optimizer", "sparsity", "quantization")
    }
    return {
        "epochs": c["trainer"]["epochs"],
        "segments": c["lr_schedule"]["segments"],
        "weight_decay": c["lr_schedule"]["weight_decay"],
        "optimizer_wd": c["optimizer"]["weight_decay"],
        "sparsity": {k: c["sparsity"][k] for k in keys["sparsity"]},
        "quantization": {k: c["quantization"][k] for k in keys["quantization"]},
    }


@pytest.fixture(scope="module")
def recipe_keys():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sections = recipe_to_config(FIXTURE)
    keys = {"sparsity": sorted(sections["sparsity"]), "quantization": sorted(sections["quantization"])}
    # everything the schema's sparsity/quantization schedule fields hold is set by the recipe
    assert set(keys["sparsity"]) >= {
        "_target_",
        "sparsity",
        "mask_type",
        "global_sparsity",
        "params",
        "start_epoch",
        "end_epoch",
        "update_frequency",
        "phases",
        "reset_momentum",
        "dead_channels",
        "dense_phase_warmup_epochs",
        "min_kept_per_channel",
    }
    assert set(keys["quantization"]) == {
        "_target_",
        "start_epoch",
        "submodules",
        "disable_observer_epoch",
        "freeze_bn_stats_epoch",
        "reduce_range",
    }
    return keys


@pytest.fixture(scope="module")
def experiment_cfg() -> DictConfig:
    return _compose([f"experiment={EXPERIMENT}"])


@pytest.fixture(scope="module")
def recipe_cfg() -> DictConfig:
    return _with_recipe(RECIPE_RUN)


def test_recipe_equals_shipped_experiment(experiment_cfg, recipe_cfg, recipe_keys):
    assert _schedule(recipe_cfg, recipe_keys) == _schedule(experiment_cfg, recipe_keys)
    assert recipe_cfg.trainer.epochs == 206
    assert recipe_cfg.lr_schedule.name == "recipe"
    assert len(recipe_cfg.sparsity.params) == 52
    # the recipe leaves everything else to the composed config
    assert recipe_cfg.model.name == "resnet50" and recipe_cfg.data.name == "imagenet_ffcv"
    assert recipe_cfg.recipe == str(FIXTURE)


def test_model_card_recipe_starts_from_pretrained_weights_like_the_experiment(experiment_cfg):
    run = ["model=resnet50", "data=imagenet_ffcv", f"recipe={MODEL_CARD}"]
    assert _with_recipe(run).model.pretrained is True and experiment_cfg.model.pretrained is True
    assert _with_recipe(run + ["model.pretrained=false"]).model.pretrained is False  # the command line wins


def test_experiment_reproduces_model_card_settings(experiment_cfg):
    e = experiment_cfg
    assert e.experiment_name == EXPERIMENT
    assert (e.model.name, e.model.pretrained) == ("resnet50", True)
    assert (e.data.name, e.data.batch_size, e.data.val_batch_size, e.data.num_workers) == ("imagenet_ffcv", 256, 1000, None)
    assert (e.optimizer.momentum, e.optimizer.nesterov, e.optimizer.weight_decay) == (0.9, True, 1e-5)
    assert e.recipe is None


def test_plan_trace_of_the_recipe(recipe_cfg):
    plan = Plan.from_config(recipe_cfg, steps_per_epoch=SPE)
    assert plan.total_steps == 206 * SPE
    at = lambda epoch: plan.at(round(epoch * SPE))  # noqa: E731

    def cos(init, t):
        return 0.5 * init * (1 + math.cos(math.pi * t))

    lrs = {
        0: 0.0512,
        2.5: 0.0512 + (0.256 - 0.0512) * 0.5,
        4.75: 0.0512 + (0.256 - 0.0512) * 0.95,
        5: 0.256,
        102.5: 0.128,
        199.75: cos(0.256, 194.75 / 195),
        200: 5e-5,
        201.25: 5e-5,
        202: 5e-5,
        204: 2.5e-5,
        205.75: cos(5e-5, 3.75 / 4),
    }
    for epoch, lr in lrs.items():
        assert at(epoch).lr == pytest.approx(lr, rel=1e-12, abs=1e-15), epoch
    assert {plan.at(s).weight_decay for s in range(plan.total_steps)} == {1e-5}

    rows = [plan.at(s) for s in range(plan.total_steps)]
    for r in rows:
        e = int(r.epoch)
        dense = e < 10 or (e < 180 and ((e - 5) // 5) % 2 == 0)
        assert r.masks.phase == ("dense" if dense else "compressed"), r.epoch
        assert r.masks.sparsity == (0.0 if dense else 0.85)
    assert at(9.75).masks.phase == "dense" and at(10).masks.phase == "compressed"
    assert at(14.75).masks.phase == "compressed" and at(15).masks.phase == "dense"
    assert at(179.75).masks.phase == "dense" and at(180).masks.phase == "compressed" and at(205.75).masks.phase == "compressed"

    updates = [r.epoch for r in rows if r.masks.update]
    assert updates == [float(e) for e in range(10, 190, 10)] + [185.0, 190.0]

    assert [r.epoch for r in rows if r.qat.start] == [200.0]
    for r in rows:
        assert r.qat.active == (r.epoch >= 200)
        assert r.qat.observers_frozen == (r.epoch >= 201)
        assert r.qat.bn_frozen == (r.epoch >= 202)
    assert at(200).phase_name == "qat" and at(199.75).phase_name == "compressed"


def test_recipe_args_from_the_config():
    for args in ["recipe_args={num_epochs:150}", "recipe_args='{\"num_epochs\": 150}'"]:
        cfg = _with_recipe([*RECIPE_RUN, args])
        assert cfg.trainer.epochs == 150, args
        assert (cfg.quantization.start_epoch, cfg.sparsity.end_epoch) == (144.0, 138.0)
        assert cfg.lr_schedule.segments[1].end_epoch == 144.0


def test_command_line_values_win_over_the_recipe():
    overrides = [*RECIPE_RUN, "trainer.epochs=3", "sparsity.sparsity=0.5", "++optimizer.weight_decay=0.001", "logger=none"]
    cfg = _with_recipe(overrides)
    assert cfg.trainer.epochs == 3
    assert cfg.sparsity.sparsity == 0.5
    assert cfg.optimizer.weight_decay == 0.001
    # the rest of the recipe still applies; group choices are not values
    assert cfg.sparsity.mask_type == "block4" and cfg.sparsity.end_epoch == 190.0
    assert QUANTIZATION.name_of(cfg.quantization) == "qat" and LOGGERS.name_of(cfg.logger) == "none"
    seg = _with_recipe([*RECIPE_RUN, "lr_schedule.segments=[{func:constant,init_lr:0.3}]"]).lr_schedule.segments
    assert len(seg) == 1 and seg[0].init_lr == 0.3


def test_recipe_result_is_still_typed_by_the_schema(tmp_path, recipe_cfg):
    assert OmegaConf.get_type(recipe_cfg.lr_schedule.segments[2]) is LRSegmentConfig
    assert OmegaConf.get_type(recipe_cfg.sparsity) is AcdcConfig
    with pytest.raises(ValidationError):
        recipe_cfg.copy().trainer.epochs = "ten"
    with pytest.raises(ConfigAttributeError):
        recipe_cfg.sparsity.copy().sparsityy = 0.5
    assert apply_recipe(_compose([]), []) == _compose([])  # no recipe: unchanged
    bad = tmp_path / "bad.yaml"
    bad.write_text(FIXTURE.read_text().replace("- input\n      - sections", "- 3\n      - sections"))
    with pytest.raises(ConfigError, match="submodules=\\[3, 'sections'\\] is not a list of module names"):
        _with_recipe(["model=resnet50", f"recipe={bad}"])
    with pytest.raises(ConfigError, match="recipe_args sets nope, not defined by the recipe"):
        _with_recipe([*RECIPE_RUN, "recipe_args={nope:1}"])


def test_cli_convert_output_composes_like_the_shipped_experiment(tmp_path, capsys, experiment_cfg, recipe_keys):
    recipe_main(["convert", str(FIXTURE), "--name", "converted_acdc85"])
    out, err = capsys.readouterr()
    assert out.startswith("# @package _global_\n")
    assert "lists 13 name(s) more than once" in err
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "converted_acdc85.yaml").write_text(out)
    converted = _compose(["experiment=converted_acdc85"], extra_dir=tmp_path)
    assert _schedule(converted, recipe_keys) == _schedule(experiment_cfg, recipe_keys)
    assert converted.experiment_name == "converted_acdc85"
    assert (converted.model.name, converted.data.name) == ("resnet50", "imagenet_ffcv")

    recipe_main(["convert", str(FIXTURE), "--args", '{"num_epochs": 150}', "--model", "resnet18", "--name", "short"])
    (tmp_path / "experiment" / "short.yaml").write_text(capsys.readouterr().out)
    short = _compose(["experiment=short"], extra_dir=tmp_path)
    assert (short.trainer.epochs, short.model.name, short.quantization.start_epoch) == (150, "resnet18", 144.0)


def test_cli_show_and_errors(capsys, tmp_path):
    recipe_main(["show", str(FIXTURE), "--args", '{"num_epochs": 150}'])
    out = capsys.readouterr().out
    assert "quantization_start_epoch: 144\n" in out and "pruning_end_epoch: 138\n" in out

    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    bad = tmp_path / "bad.yaml"
    bad.write_text("n: eval(__import__('os').getcwd())\nmodifiers:\n  - !EpochRangeModifier\n    end_epoch: 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "acdc_exp.cli.recipe", "show", str(bad)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("acdc-recipe: error: recipe expression \"__import__('os').getcwd()\" is not allowed")
    with pytest.raises(SystemExit) as exit_:
        recipe_main(["convert", str(FIXTURE), "--name", "bad name"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "acdc-recipe: error: --name 'bad name' is not a valid experiment name; allowed: letters, digits, _ . -"
    )


def test_cli_convert_of_the_model_card_keeps_pretrained_and_the_recipe_name(tmp_path, capsys, experiment_cfg, recipe_keys):
    recipe_main(["convert", str(MODEL_CARD)])  # no --name: the recipe's stem, as a recipe= run of it is named
    out = capsys.readouterr().out
    assert "\nmodel:\n  pretrained: true\n" in out and f"\nexperiment_name: {STEM}\n" in out
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "from_card.yaml").write_text(out)
    converted = _compose(["experiment=from_card"], extra_dir=tmp_path)
    assert _schedule(converted, recipe_keys) == _schedule(experiment_cfg, recipe_keys)
    assert (converted.model.name, converted.model.pretrained, converted.experiment_name) == ("resnet50", True, STEM)
    assert converted.recipe is None  # the experiment stands alone

    recipe_main(["convert", str(FIXTURE)])  # a bare .yaml says nothing: the model config's default stays
    out = capsys.readouterr().out
    assert "\nmodel:" not in out and "no --pretrained in the recipe" in out
    (tmp_path / "experiment" / "from_yaml.yaml").write_text(out)
    assert _compose(["experiment=from_yaml"], extra_dir=tmp_path).model.pretrained is False


def test_recipe_run_is_named_after_the_recipe():
    assert _compose([f"recipe={FIXTURE}"]).experiment_name == STEM
    assert _compose([f"recipe={MODEL_CARD}", "model=resnet50"]).experiment_name == STEM
    assert _compose(["recipe='recipes/acdc 90.md'"]).experiment_name == "acdc_90"  # a folder and W&B name
    # explicit names win: the command line, an experiment; no recipe: the demo's name
    assert _compose([f"recipe={FIXTURE}", "experiment_name=mine"]).experiment_name == "mine"
    assert _compose([f"experiment={EXPERIMENT}", f"recipe={FIXTURE}"]).experiment_name == EXPERIMENT
    assert _compose([]).experiment_name == "digits_acdc"
    assert _compose(["sparsity=gmp"]).experiment_name == "digits_gmp"
    # Hydra builds the run dir from the name before the recipe is read
    run_dir = _compose([f"recipe={FIXTURE}", "paths.runs_root=/r"], hydra_cfg=True).hydra.run.dir
    assert run_dir.startswith(f"/r/{STEM}/")


def test_bare_yaml_recipe_on_a_torchvision_resnet_needs_explicit_pretrained():
    from acdc_exp.config.compose import compose_config, finalize

    def final(overrides):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the recipe's duplicate params
            return finalize(compose_config(overrides), overrides)

    bare = ["model=resnet50", "data=imagenet_ffcv", f"recipe={FIXTURE}"]
    with pytest.raises(ConfigError) as err:
        final(bare)
    msg = str(err.value)
    assert "\n" not in msg and f"recipe {str(FIXTURE)!r} does not say whether model resnet50 starts" in msg
    assert "allowed: model.pretrained=true" in msg and "model.pretrained=false (random weights)" in msg
    assert final([*bare, "model.pretrained=false"]).model.pretrained is False
    assert final([*bare, "model.pretrained=true"]).model.pretrained is True
    # decided elsewhere: the model card's command, an experiment that starts pretrained;
    # and the small ResNet has no pretrained weights to forget
    assert final(["model=resnet50", "data=imagenet_ffcv", f"recipe={MODEL_CARD}"]).model.pretrained is True
    assert final([f"experiment={EXPERIMENT}", f"recipe={FIXTURE}"]).model.pretrained is True
    assert MODELS.name_of(final([f"recipe={FIXTURE}"]).model) == "small_resnet"
