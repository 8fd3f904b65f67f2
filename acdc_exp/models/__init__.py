"""Model builders (torchvision ResNets and a small ResNet for 32x32 inputs)."""

from acdc_exp.models.factory import MODEL_NAMES, build_model, model_from_config

__all__ = ["build_model", "model_from_config", "MODEL_NAMES"]
