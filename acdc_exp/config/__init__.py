"""Typed config schema, composition helpers and validation."""

from acdc_exp.config.compose import compose_config, config_dir, finalize
from acdc_exp.config.schema import TrainConfig, register_configs

__all__ = ["TrainConfig", "register_configs", "compose_config", "config_dir", "finalize"]
